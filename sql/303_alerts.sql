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
        pg_catalog.jsonb_agg(wk.worker_id order by wk.worker_id) as workers
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
    pg_catalog.jsonb_build_object('ready', s.ready, 'estimated', s.ready_estimated, 'in_flight', s.in_flight) as details
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
    pg_catalog.jsonb_build_object('dead', s.dead, 'estimated', s.dead_estimated, 'dead_lettered_1h', s.dead_lettered_1h)
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
    )
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
    pg_catalog.jsonb_build_object('ready', s.ready, 'live_workers', s.live_workers)
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
    pg_catalog.jsonb_build_object('workers', x.workers)
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
    )
from holders as h
inner join defaults as d on d.alert operator(pg_catalog.=) 'xmin_horizon'
where extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start) operator(pg_catalog.>) d.threshold

union all

select
    'table_bloat',
    l.queue,
    st.n_dead_tup::double precision operator(pg_catalog./) (st.n_live_tup operator(pg_catalog.+) st.n_dead_tup),
    l.threshold,
    greatest(st.last_vacuum, st.last_autovacuum),
    pg_catalog.format('table pgmq.%s is %s%% dead tuples (%s dead, %s live; threshold %s%%)', st.relname,
        pg_catalog.round((100.0 operator(pg_catalog.*) st.n_dead_tup) operator(pg_catalog./) (st.n_live_tup operator(pg_catalog.+) st.n_dead_tup)), st.n_dead_tup, st.n_live_tup,
        pg_catalog.round((100 operator(pg_catalog.*) l.threshold)::numeric)),
    pg_catalog.jsonb_build_object(
        'table', 'pgmq.' operator(pg_catalog.||) st.relname, 'n_dead_tup', st.n_dead_tup, 'n_live_tup', st.n_live_tup,
        'last_autovacuum', st.last_autovacuum, 'last_vacuum', st.last_vacuum
    )
from limits as l
inner join pg_catalog.pg_stat_user_tables as st
    on st.schemaname operator(pg_catalog.=) 'pgmq' and (
        st.relname operator(pg_catalog.=) ('q_' operator(pg_catalog.||) l.queue)
        or st.relname operator(pg_catalog.=) ('q_' operator(pg_catalog.||) l.queue operator(pg_catalog.||) '_dlq')
    )
where l.alert operator(pg_catalog.=) 'table_bloat'
    and st.n_dead_tup operator(pg_catalog.>=) 1000
    and (st.n_dead_tup::double precision operator(pg_catalog./) (st.n_live_tup operator(pg_catalog.+) st.n_dead_tup))
    operator(pg_catalog.>) l.threshold

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
    )
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
    pg_catalog.jsonb_build_object('table', pg_catalog.format('pgmq.q_%s_default', p.queue), 'jobs', p.jobs)
from pgmq_jobs._default_partition_jobs() as p;
-- noqa: enable=LT01

comment on view pgmq_jobs.alerts is
'Alert conditions firing now, one row each: alert, queue (null for the database), value,
threshold (alert_thresholds: per queue, else the default; set_alert_threshold), since (when it
started, from the data: the (threshold+1)-th oldest ready job or dead letter, when the oldest
job crossed the age, the missed heartbeats, the transaction start; the last vacuum for
table_bloat; null when unknown), a message and details. queue_depth: ready jobs > threshold
(10000). dead_letters: dead letters > 100. low_throughput: completions per second over the 1m
window < 10 while ready jobs have waited over a minute. oldest_job_age: the oldest ready job has
waited more seconds than the threshold (300). stalled_workers: more workers of the queue than
the threshold (0) missed three heartbeats or went silent within the hour without a clean stop.
xmin_horizon: a session of this database has held a snapshot or transaction id for more seconds
than the threshold (300; idle-in-transaction sessions included), holding back vacuum.
table_bloat: a queue''s table (or its DLQ) has at least 1000 dead tuples making up more than the
threshold share (0.5) of its rows. wraparound: age(datfrozenxid) is past the threshold share
(0.5) of autovacuum_freeze_max_age. default_partition: a partitioned queue''s default partition
holds jobs (threshold 0, fixed), i.e. partition maintenance has fallen behind.';

revoke all on pgmq_jobs.alerts from public;
grant select on pgmq_jobs.alerts to pgmq_jobs_admin;
