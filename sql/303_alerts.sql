-- 303_alerts.sql: view alerts, one row per alert condition firing now: queue
-- health from queue_stats and workers, database health from the statistics
-- views. Thresholds come from alert_thresholds (set_alert_threshold).

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.alerts as
with stats as (
    select s.* from pgmq_jobs.queue_stats as s
),

limits as (
    select
        d.alert,
        qs.queue,
        coalesce(o.threshold, d.threshold) as threshold
    from pgmq_jobs.alert_thresholds as d
    cross join pgmq_jobs.queue_settings as qs
    left join pgmq_jobs.alert_thresholds as o on d.alert operator(pg_catalog.=) o.alert and qs.queue operator(pg_catalog.=) o.queue
    where d.queue is null
),

defaults as (
    select d.alert, d.threshold from pgmq_jobs.alert_thresholds as d
    where d.queue is null
),

stalled as (
    select
        qn.queue,
        pg_catalog.count(*) as n,
        pg_catalog.min(wk.last_seen_at operator(pg_catalog.+) (wk.heartbeat_interval operator(pg_catalog.*) 3)) as since,
        pg_catalog.jsonb_agg(wk.worker_id order by wk.worker_id) as workers,
        pg_catalog.max(wk.heartbeat_interval operator(pg_catalog.*) 3) as hold
    from pgmq_jobs.workers as wk
    cross join lateral pg_catalog.unnest(wk.queues) as qn (queue)
    where wk.status operator(pg_catalog.=) 'stale'
        or (
            wk.status operator(pg_catalog.=) 'gone' and wk.stopped_at is null
            and wk.last_seen_at operator(pg_catalog.>) (pg_catalog.statement_timestamp() operator(pg_catalog.-) interval '1 hour')
        )
    group by qn.queue
),

holders as (
    select
        h.*,
        pg_catalog.count(*) over () as sessions
    from pgmq_jobs._xmin_holders() as h
    order by h.xact_start
    limit 1
),

-- table_bloat: dead tuples that persist. The floor (dead tuples) and how long
-- the condition must hold come from the settings pgmq_jobs.table_bloat_min_dead_tuples
-- (default 10000) and pgmq_jobs.table_bloat_minutes (default 10).
bloat_settings as (
    select
        coalesce(nullif(pg_catalog.current_setting('pgmq_jobs.table_bloat_min_dead_tuples', true), '')::bigint, 10000) as floor,
        pg_catalog.make_interval(
            mins => coalesce(nullif(pg_catalog.current_setting('pgmq_jobs.table_bloat_minutes', true), '')::integer, 10)
        ) as hold,
        pg_catalog.statement_timestamp() as t
),

-- Each queue table and DLQ now, from the cumulative statistics (found by
-- name in pg_class: to_regclass would need USAGE on schema pgmq).
bloat_now as (
    select
        l.queue,
        l.threshold,
        c.relname operator(pg_catalog.<>) ('q_' operator(pg_catalog.||) l.queue) as dlq,
        c.relname::text as relname,
        c.oid as rel,
        pg_catalog.pg_stat_get_dead_tuples(c.oid) as n_dead,
        pg_catalog.pg_stat_get_live_tuples(c.oid) as n_live,
        pg_catalog.pg_stat_get_tuples_inserted(c.oid) operator(pg_catalog.+) pg_catalog.pg_stat_get_tuples_updated(c.oid)
        operator(pg_catalog.+) pg_catalog.pg_stat_get_tuples_deleted(c.oid) as written,
        pg_catalog.pg_stat_get_vacuum_count(c.oid) operator(pg_catalog.+) pg_catalog.pg_stat_get_autovacuum_count(c.oid) as vacuums
    from limits as l
    inner join pg_catalog.pg_class as c
        on c.relname operator(pg_catalog.=) any(array[
            'q_' operator(pg_catalog.||) l.queue, 'q_' operator(pg_catalog.||) l.queue operator(pg_catalog.||) '_dlq'
        ]::name [])
    inner join pg_catalog.pg_namespace as n
        on c.relnamespace operator(pg_catalog.=) n.oid and n.nspname operator(pg_catalog.=) 'pgmq'
    where l.alert operator(pg_catalog.=) 'table_bloat'
),

-- The sweep's samples (table_samples) of the last hour and the hold, then
-- now, each judged: the condition holds when the dead tuples are at the floor
-- or above and over the threshold share of the rows, unless a vacuum since
-- the sample before cleared what was dead then (the dead tuples are no more
-- than the rows written since, so all of them are newer: a healthy table
-- between two autovacuums). A sample with none before it is not judged.
bloat_series as (
    select
        x.queue,
        x.dlq,
        x.at,
        x.n_dead operator(pg_catalog.>=) bs.floor
        and (x.n_dead::double precision operator(pg_catalog./) nullif(x.n_dead operator(pg_catalog.+) x.n_live, 0)) operator(pg_catalog.>) x.threshold
        -- The first sample of the window has none before it: not judged.
        and coalesce(not (
            x.vacuums operator(pg_catalog.>) pg_catalog.lag(x.vacuums) over w
            and x.n_dead operator(pg_catalog.<=) (x.written operator(pg_catalog.-) pg_catalog.lag(x.written) over w)
        ), false) as holds
    from (
        select b.queue, b.threshold, b.dlq, ts.at, ts.n_dead, ts.n_live, ts.written, ts.vacuums
        from bloat_now as b
        cross join bloat_settings as bs2
        inner join pgmq_jobs.table_samples as ts
            on b.queue operator(pg_catalog.=) ts.queue and b.dlq operator(pg_catalog.=) ts.dlq
        where ts.at operator(pg_catalog.>=) (bs2.t operator(pg_catalog.-) (bs2.hold operator(pg_catalog.+) interval '1 hour'))
            and ts.at operator(pg_catalog.<) bs2.t
        union all
        select b.queue, b.threshold, b.dlq, bs2.t, b.n_dead, b.n_live, b.written, b.vacuums
        from bloat_now as b
        cross join bloat_settings as bs2
    ) as x
    cross join bloat_settings as bs
    window w as (partition by x.queue, x.dlq order by x.at)
),

-- Since when the condition has held without a break (null: not now).
bloat_runs as (
    select
        z.queue,
        z.dlq,
        pg_catalog.min(z.at) filter (where z.at operator(pg_catalog.>) coalesce(z.last_ok, '-infinity'::timestamptz)) as since
    from (
        select
            y.queue,
            y.dlq,
            y.at,
            pg_catalog.max(y.at) filter (where not y.holds) over (partition by y.queue, y.dlq) as last_ok
        from bloat_series as y
    ) as z
    group by z.queue, z.dlq
)

select
    'queue_depth'::text as alert,
    s.queue,
    s.ready::double precision as value,
    l.threshold,
    coalesce(
        case when l.threshold operator(pg_catalog.<) 1000000 then pgmq_jobs._nth_at(s.queue, 'ready', pg_catalog.floor(l.threshold)::bigint operator(pg_catalog.+) 1) end,
        s.measured_at operator(pg_catalog.-) s.oldest_ready_age
    ) as since,
    pg_catalog.format('queue %s has %s%s jobs ready (threshold %s)', s.queue,
        case when s.ready_estimated then 'about ' else '' end, s.ready, l.threshold) as message,
    pg_catalog.jsonb_build_object('ready', s.ready, 'estimated', s.ready_estimated, 'in_flight', s.in_flight) as details,
    interval '0' as must_hold
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'queue_depth'
where s.ready operator(pg_catalog.>) l.threshold

union all

select
    'dead_letters',
    s.queue,
    s.dead::double precision,
    l.threshold,
    case when l.threshold operator(pg_catalog.<) 1000000 then pgmq_jobs._nth_at(s.queue, 'dead', pg_catalog.floor(l.threshold)::bigint operator(pg_catalog.+) 1) end,
    pg_catalog.format('queue %s has %s%s dead letters (threshold %s)', s.queue,
        case when s.dead_estimated then 'about ' else '' end, s.dead, l.threshold),
    pg_catalog.jsonb_build_object('dead', s.dead, 'estimated', s.dead_estimated, 'dead_lettered_1h', s.dead_lettered_1h),
    interval '0'
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'dead_letters'
where s.dead operator(pg_catalog.>) l.threshold

union all

select
    'low_throughput',
    s.queue,
    s.completed_rate_1m,
    l.threshold,
    s.measured_at operator(pg_catalog.-) s.oldest_ready_age operator(pg_catalog.+) interval '1 minute',
    pg_catalog.format('queue %s completes %s jobs/s while %s jobs wait, the oldest for %s s (threshold %s jobs/s)',
        s.queue, pg_catalog.round(s.completed_rate_1m::numeric, 2), s.ready,
        pg_catalog.round(extract(epoch from s.oldest_ready_age)), l.threshold),
    pg_catalog.jsonb_build_object(
        'ready', s.ready, 'oldest_ready_seconds', extract(epoch from s.oldest_ready_age),
        'live_workers', s.live_workers
    ),
    interval '1 minute'
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'low_throughput'
where s.ready operator(pg_catalog.>) 0 and s.oldest_ready_age operator(pg_catalog.>) interval '1 minute' and s.completed_rate_1m operator(pg_catalog.<) l.threshold

union all

select
    'oldest_job_age',
    s.queue,
    extract(epoch from s.oldest_ready_age)::double precision,
    l.threshold,
    s.measured_at operator(pg_catalog.-) s.oldest_ready_age operator(pg_catalog.+) pg_catalog.make_interval(secs => l.threshold),
    pg_catalog.format('the oldest ready job of queue %s has waited %s s (threshold %s s)', s.queue,
        pg_catalog.round(extract(epoch from s.oldest_ready_age)), l.threshold),
    pg_catalog.jsonb_build_object('ready', s.ready, 'live_workers', s.live_workers),
    pg_catalog.make_interval(secs => l.threshold)
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'oldest_job_age'
where extract(epoch from s.oldest_ready_age) operator(pg_catalog.>) l.threshold

union all

select
    'stalled_workers',
    x.queue,
    x.n::double precision,
    th.threshold,
    x.since,
    pg_catalog.format('%s worker(s) of queue %s stopped sending heartbeats: %s', x.n, x.queue,
        (select pg_catalog.string_agg(v, ', ') from pg_catalog.jsonb_array_elements_text(x.workers) as v)),
    pg_catalog.jsonb_build_object('workers', x.workers),
    x.hold
from stalled as x
cross join lateral (
    select coalesce(
        (select t.threshold from pgmq_jobs.alert_thresholds as t
            where t.alert operator(pg_catalog.=) 'stalled_workers' and t.queue operator(pg_catalog.=) x.queue),
        (
            select d.threshold from defaults as d
            where d.alert operator(pg_catalog.=) 'stalled_workers'
        )
    ) as threshold
) as th
where x.n operator(pg_catalog.>) th.threshold

union all

select
    'xmin_horizon',
    null,
    extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start)::double precision,
    d.threshold,
    h.xact_start operator(pg_catalog.+) pg_catalog.make_interval(secs => d.threshold),
    pg_catalog.format('session %s (%s, %s) has held a transaction open for %s s, holding back vacuum',
        h.pid, coalesce(nullif(h.application_name, ''), h.usename), h.state,
        pg_catalog.round(extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start))),
    pg_catalog.jsonb_build_object(
        'pid', h.pid, 'user', h.usename, 'application_name', h.application_name, 'state', h.state,
        'xact_start', h.xact_start, 'xmin_age', h.xmin_age, 'sessions', h.sessions
    ),
    pg_catalog.make_interval(secs => d.threshold)
from holders as h
inner join defaults as d on d.alert operator(pg_catalog.=) 'xmin_horizon'
where extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start) operator(pg_catalog.>) d.threshold

union all

select
    'table_bloat',
    b.queue,
    b.n_dead::double precision operator(pg_catalog./) (b.n_live operator(pg_catalog.+) b.n_dead),
    b.threshold,
    r.since,
    pg_catalog.format('table pgmq.%s has held at least %s dead tuples over %s%% of its rows for %s minutes,'
        ' and vacuum has not removed them: now %s dead, %s live (%s%%)',
        b.relname, bs.floor, pg_catalog.round((100 operator(pg_catalog.*) b.threshold)::numeric),
        pg_catalog.floor(extract(epoch from bs.t operator(pg_catalog.-) r.since) operator(pg_catalog./) 60),
        b.n_dead, b.n_live,
        pg_catalog.round((100.0 operator(pg_catalog.*) b.n_dead) operator(pg_catalog./) (b.n_live operator(pg_catalog.+) b.n_dead))),
    pg_catalog.jsonb_build_object(
        'table', 'pgmq.' operator(pg_catalog.||) b.relname, 'n_dead_tup', b.n_dead, 'n_live_tup', b.n_live,
        'min_dead_tuples', bs.floor,
        'last_autovacuum', pg_catalog.pg_stat_get_last_autovacuum_time(b.rel),
        'last_vacuum', pg_catalog.pg_stat_get_last_vacuum_time(b.rel)
    ),
    bs.hold
from bloat_now as b
cross join bloat_settings as bs
inner join bloat_runs as r on b.queue operator(pg_catalog.=) r.queue and b.dlq operator(pg_catalog.=) r.dlq
where r.since operator(pg_catalog.<=) (bs.t operator(pg_catalog.-) bs.hold)

union all

select
    'wraparound',
    null,
    pg_catalog.age(db.datfrozenxid)::double precision operator(pg_catalog./) pg_catalog.current_setting('autovacuum_freeze_max_age')::double precision,
    d.threshold,
    null::timestamptz,
    pg_catalog.format('database %s is %s transactions from its oldest unfrozen one, %s%% of autovacuum_freeze_max_age',
        db.datname, pg_catalog.age(db.datfrozenxid),
        pg_catalog.round(
            (100.0 operator(pg_catalog.*) pg_catalog.age(db.datfrozenxid))
            operator(pg_catalog./) pg_catalog.current_setting('autovacuum_freeze_max_age')::numeric
        )),
    pg_catalog.jsonb_build_object(
        'database', db.datname, 'xid_age', pg_catalog.age(db.datfrozenxid),
        'autovacuum_freeze_max_age', pg_catalog.current_setting('autovacuum_freeze_max_age')::bigint
    ),
    interval '0'
from pg_catalog.pg_database as db
inner join defaults as d on d.alert operator(pg_catalog.=) 'wraparound'
where db.datname operator(pg_catalog.=) pg_catalog.current_database()
    and pg_catalog.age(db.datfrozenxid)::double precision
    operator(pg_catalog./) pg_catalog.current_setting('autovacuum_freeze_max_age')::double precision operator(pg_catalog.>) d.threshold

union all

select
    'default_partition',
    p.queue,
    p.jobs::double precision,
    0::double precision,
    null::timestamptz,
    pg_catalog.format('partitioned queue %s has %s job(s) in its default partition: pg_partman''s maintenance'
        ' has fallen behind (run pgmq_jobs._partman_maintenance(), or check pg_cron job pgmq_jobs_partman)',
        p.queue, p.jobs),
    pg_catalog.jsonb_build_object('table', pg_catalog.format('pgmq.q_%s_default', p.queue), 'jobs', p.jobs),
    interval '0'
from pgmq_jobs._default_partition_jobs() as p;
-- noqa: enable=LT01

comment on view pgmq_jobs.alerts is
'Alert conditions firing now, one row each: alert, queue (null for the database), value,
threshold (alert_thresholds: per queue, else the default; set_alert_threshold), since (when it
started, from the data: the (threshold+1)-th oldest ready job or dead letter, when the oldest
job crossed the age, the missed heartbeats, the transaction start, the first sweep sample of a
table''s bloat; null when unknown), a message, details, and must_hold: how long the condition
must hold before the alert fires (0: at once). queue_depth: ready jobs > threshold (10000), at
once. dead_letters: dead letters > 100, at once. low_throughput: completions per second over
the 1m window < 10 while ready jobs have waited over a minute (must hold 1 minute).
oldest_job_age: the oldest ready job has waited more seconds than the threshold (300; must hold
that long). stalled_workers: more workers of the queue than the threshold (0) missed three
heartbeats or went silent within the hour without a clean stop (must hold three heartbeat
intervals). xmin_horizon: a session of this database has held a snapshot or transaction id for
more seconds than the threshold (300; idle-in-transaction sessions included; must hold that
long), holding back vacuum. table_bloat: a queue''s table (or its DLQ) has held at least
pgmq_jobs.table_bloat_min_dead_tuples dead tuples (a setting, default 10000) making up more than
the threshold share (0.5) of its rows, at every sweep sample for pgmq_jobs.table_bloat_minutes
(default 10) and now, with no vacuum in between clearing them (a healthy queue''s dead tuples
between two autovacuums never fire it); it needs the sweep''s samples. wraparound:
age(datfrozenxid) is past the threshold share (0.5) of autovacuum_freeze_max_age, at once.
default_partition: a partitioned queue''s default partition holds jobs (threshold 0, fixed),
i.e. partition maintenance has fallen behind, at once.';

revoke all on pgmq_jobs.alerts from public;
grant select on pgmq_jobs.alerts to pgmq_jobs_admin;
