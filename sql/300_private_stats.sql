-- 300_private_stats.sql: private helpers behind the observability views
-- (queue_stats, alerts): capped queue gauges, the n-th oldest ready job or dead
-- letter, and the sessions holding back vacuum.
--
-- The views run with their owner's rights on tables, but functions run as the
-- caller: the three helpers that read PGMQ tables or every session's activity
-- are therefore security definer and granted to pgmq_jobs_admin (only).

-- The gauges of one queue, cheap at any depth. Each count stops at cap rows
-- (an index walk over at most cap entries); a count that reaches the cap is
-- replaced by an estimate from the table's live-tuple statistics
-- (pg_stat_user_tables.n_live_tup, current to about a second) and flagged
-- (ready_estimated covers ready and delayed, derived from the same counts).
-- The counts are ordered by vt so that they walk the vt index and stop at the
-- cap, rather than scan the table past rows on the other side of the time.
-- in_flight walks the small partial index of delivered jobs; oldest_ready_at is
-- the first entry of the vt index; enqueued_total is the committed enqueues
-- the sweep has folded (queue_totals; queue_stats adds the log not folded yet).
-- The msg_id sequence would count rolled-back enqueues too.
create or replace function pgmq_jobs._queue_gauges(queue text, cap integer)
returns table (
    ready bigint,
    ready_estimated boolean,
    in_flight bigint,
    delayed bigint,
    dead bigint,
    dead_estimated boolean,
    oldest_ready_at timestamptz,
    enqueued_total bigint
)
language plpgsql
stable
security definer
rows 1
set search_path = pg_catalog, pg_temp
as $$
declare
    q regclass := to_regclass(format('pgmq.%I', 'q_' || queue));
    d regclass := to_regclass(format('pgmq.%I', 'q_' || queue || '_dlq'));
    future bigint;
    t timestamptz := clock_timestamp();
begin
    if q is null then
        return;
    end if;
    execute format(
        $sql$
        select
            (select count(*) from (
                select from pgmq.%1$I as q where q.vt <= $2 order by q.vt limit $1) as c),
            (select count(*) from (
                select from pgmq.%1$I as q where q.vt > $2 order by q.vt limit $1) as c),
            (select count(*) from (
                select from pgmq.%1$I as q
                where q.vt > $2 and q.read_ct > 0 and pgmq_jobs._open_delivery(q.headers, q.read_ct)
                limit $1) as c),
            (select min(q.vt) from pgmq.%1$I as q where q.vt <= $2),
            coalesce((select t.enqueued from pgmq_jobs.queue_totals as t where t.queue = $3), 0)
        $sql$,
        'q_' || queue
    ) into ready, future, in_flight, oldest_ready_at, enqueued_total using cap, t, queue;
    -- Past the cap, the total from the statistics minus the other (exact) count;
    -- when both reached it, only ready is estimated and delayed stays at the cap.
    ready_estimated := ready >= cap or future >= cap;
    if ready >= cap then
        ready := greatest(ready, pg_stat_get_live_tuples(q) - future);
    elsif future >= cap then
        future := greatest(future, pg_stat_get_live_tuples(q) - ready);
    end if;
    delayed := greatest(future - in_flight, 0);
    if d is not null then
        execute format(
            'select count(*) from (select from pgmq.%I limit $1) as c', 'q_' || queue || '_dlq'
        ) into dead using cap;
        dead_estimated := dead >= cap;
        if dead_estimated then
            dead := greatest(dead, pg_stat_get_live_tuples(d));
        end if;
    end if;
    return next;
end
$$;

-- When the n-th oldest job now ready became ready (kind 'ready', by vt), or
-- when the n-th oldest dead letter died (kind 'dead'): the moment since which
-- today's backlog alone exceeds n - 1. Null when there are fewer than n.
create or replace function pgmq_jobs._nth_at(queue text, kind text, n bigint)
returns timestamptz
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    found_at timestamptz;
begin
    if n is null or n < 1 or to_regclass(format('pgmq.%I', 'q_' || queue)) is null then
        return null;
    end if;
    if kind = 'ready' then
        execute format(
            'select q.vt from pgmq.%I as q where q.vt <= $2 order by q.vt offset $1 limit 1',
            'q_' || queue
        ) into found_at using n - 1, clock_timestamp();
    elsif kind = 'dead' then
        execute format(
            'select d.vt from pgmq.%I as d order by d.vt offset $1 limit 1', 'q_' || queue || '_dlq'
        ) into found_at using n - 1;
    end if;
    return found_at;
end
$$;

-- Sessions of this database (other than the caller) whose open transaction
-- holds back vacuum's xmin horizon: they have a snapshot (backend_xmin) or an
-- assigned transaction id. Security definer so that the view shows every
-- role's sessions (this needs the owner to be a superuser or a member of
-- pg_read_all_stats; otherwise only the owner's own sessions are seen).
create or replace function pgmq_jobs._xmin_holders()
returns table (
    pid integer,
    usename text,
    application_name text,
    state text,
    xact_start timestamptz,
    xmin_age integer
)
language sql
stable
security definer
rows 5
set search_path = pg_catalog, pg_temp
as $$
    select
        a.pid,
        a.usename::text,
        a.application_name,
        a.state,
        a.xact_start,
        greatest(age(a.backend_xmin), age(a.backend_xid))
    from pg_catalog.pg_stat_activity as a
    where a.datname = current_database()
        and a.pid <> pg_backend_pid()
        and a.backend_type = 'client backend'
        and a.xact_start is not null
        and (a.backend_xmin is not null or a.backend_xid is not null)
    order by a.xact_start
$$;

-- Partitioned queues whose default partition holds jobs (alert
-- default_partition): pg_partman's maintenance has fallen behind the job ids.
-- Counted up to 100000 (a default partition is normally empty).
create or replace function pgmq_jobs._default_partition_jobs()
returns table (queue text, jobs bigint)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q text;
begin
    for q in select qs.queue from pgmq_jobs.queue_settings as qs where qs.partitioned order by 1 loop
        continue when pg_catalog.to_regclass(format('pgmq.%I', 'q_' || q || '_default')) is null;
        execute format(
            'select count(*) from (select from pgmq.%I limit 100000) as d', 'q_' || q || '_default'
        ) into jobs;
        if jobs > 0 then
            queue := q;
            return next;
        end if;
    end loop;
end
$$;

-- The sweep's sample of every queue table's (and DLQ's) tuple statistics,
-- taken as of at (the sweep passes its clock; a test passes the times it
-- plays), for the table_bloat alert; samples older than two hours before at
-- are dropped. pg_stat_get_* read the cumulative statistics, current to
-- about a second. Partitioned queues are sampled on their parent, which holds
-- no rows. Returns how many tables were sampled.
create or replace function pgmq_jobs._sample_tables(at timestamptz)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    sampled integer;
begin
    if at is null or not isfinite(at) then
        raise exception 'at must be a finite time, got %', coalesce(at::text, 'null')
            using errcode = '22023';
    end if;
    insert into pgmq_jobs.table_samples as t (queue, dlq, at, n_dead, n_live, written, vacuums)
    select
        qs.queue,
        r.dlq,
        _sample_tables.at,
        pg_stat_get_dead_tuples(r.rel),
        pg_stat_get_live_tuples(r.rel),
        pg_stat_get_tuples_inserted(r.rel) + pg_stat_get_tuples_updated(r.rel)
        + pg_stat_get_tuples_deleted(r.rel),
        pg_stat_get_vacuum_count(r.rel) + pg_stat_get_autovacuum_count(r.rel)
    from pgmq_jobs.queue_settings as qs
    cross join lateral (
        values
        (false, to_regclass(format('pgmq.%I', 'q_' || qs.queue))),
        (true, to_regclass(format('pgmq.%I', 'q_' || qs.queue || '_dlq')))
    ) as r (dlq, rel)
    where r.rel is not null
    on conflict on constraint table_samples_pkey do update set
        n_dead = excluded.n_dead,
        n_live = excluded.n_live,
        written = excluded.written,
        vacuums = excluded.vacuums;
    get diagnostics sampled = row_count;
    delete from pgmq_jobs.table_samples as t where t.at < _sample_tables.at - interval '2 hours';
    return sampled;
end
$$;

comment on function pgmq_jobs._sample_tables(timestamptz) is
'Record, as of at, each queue table''s and DLQ''s dead and live tuples and cumulative write and
vacuum counts in table_samples (for the table_bloat alert); drop samples older than two hours.
Called by sweep() with its clock.';

revoke all on function pgmq_jobs._queue_gauges(text, integer) from public;
revoke all on function pgmq_jobs._nth_at(text, text, bigint) from public;
revoke all on function pgmq_jobs._xmin_holders() from public;
revoke all on function pgmq_jobs._default_partition_jobs() from public;
revoke all on function pgmq_jobs._sample_tables(timestamptz) from public;
grant execute on function
    pgmq_jobs._queue_gauges(text, integer),
    pgmq_jobs._nth_at(text, text, bigint),
    pgmq_jobs._xmin_holders(),
    pgmq_jobs._default_partition_jobs()
to pgmq_jobs_admin;
