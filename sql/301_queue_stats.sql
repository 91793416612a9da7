-- 301_queue_stats.sql: view queue_stats, one row of metrics per queue, cheap at
-- any depth: gauges, outcome counts and rates, processing times, live workers.
--
-- Windows: *_1m counts from the start of the previous minute until now (60 to
-- 120 s), *_5m from the start of the minute five minutes ago (5 to 6 min), *_1h
-- likewise (60 to 61 min); rates divide by that span, so they are per second
-- over exactly what was counted. Counts come from queue_history (minutes the
-- sweep folded) plus the outcome_log rows not folded yet, read in one snapshot,
-- so they are current without waiting for a sweep and never counted twice.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.queue_stats as
with w as (
    select
        x.t,
        pg_catalog.date_trunc('minute', x.t operator(pg_catalog.-) interval '1 minute') as since_1m,
        pg_catalog.date_trunc('minute', x.t operator(pg_catalog.-) interval '5 minutes') as since_5m,
        pg_catalog.date_trunc('minute', x.t operator(pg_catalog.-) interval '1 hour') as since_1h,
        coalesce(nullif(pg_catalog.current_setting('pgmq_jobs.stats_count_cap', true), '')::integer, 20000) as cap
    from (select pg_catalog.statement_timestamp() as t) as x
),

logged as (
    select
        o.queue,
        coalesce(pg_catalog.sum(o.completed) filter (where o.at operator(pg_catalog.>=) w.since_1m), 0) as completed_1m,
        coalesce(pg_catalog.sum(o.retried) filter (where o.at operator(pg_catalog.>=) w.since_1m), 0) as retried_1m,
        coalesce(pg_catalog.sum(o.dead operator(pg_catalog.+) o.expired) filter (where o.at operator(pg_catalog.>=) w.since_1m), 0) as dead_1m,
        coalesce(pg_catalog.sum(o.completed) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as completed_5m,
        coalesce(pg_catalog.sum(o.retried) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as retried_5m,
        coalesce(pg_catalog.sum(o.dead operator(pg_catalog.+) o.expired) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as dead_5m,
        coalesce(pg_catalog.sum(o.completed) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as completed_1h,
        coalesce(pg_catalog.sum(o.retried) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as retried_1h,
        coalesce(pg_catalog.sum(o.dead operator(pg_catalog.+) o.expired) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as dead_1h,
        coalesce(pg_catalog.sum(o.duration_count) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as timed_5m,
        coalesce(pg_catalog.sum(o.duration_ms_sum) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as ms_5m,
        coalesce(pg_catalog.sum(o.duration_count) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as timed_1h,
        coalesce(pg_catalog.sum(o.duration_ms_sum) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as ms_1h,
        -- Every row of the log is not folded yet: all of it adds to the total.
        coalesce(pg_catalog.sum(o.enqueued), 0) as enqueued_log
    from pgmq_jobs.outcome_log as o
    cross join w
    group by o.queue
),

-- Materialized: referenced inside the per-queue p95 subquery, it would
-- otherwise be computed again for every queue.
log_buckets as materialized (
    select
        o.queue,
        b.i,
        pg_catalog.sum(b.n) as n
    from pgmq_jobs.outcome_log as o
    cross join w
    cross join lateral pg_catalog.unnest(o.duration_buckets) with ordinality as b (n, i)
    where o.at operator(pg_catalog.>=) w.since_5m and o.duration_buckets is not null
    group by o.queue, b.i
),

counted as (
    select
        qs.queue,
        w.t,
        g.*,
        h.completed_1m operator(pg_catalog.+) coalesce(l.completed_1m, 0) as completed_1m,
        h.retried_1m operator(pg_catalog.+) coalesce(l.retried_1m, 0) as retried_1m,
        h.dead_1m operator(pg_catalog.+) coalesce(l.dead_1m, 0) as dead_1m,
        h.completed_5m operator(pg_catalog.+) coalesce(l.completed_5m, 0) as completed_5m,
        h.retried_5m operator(pg_catalog.+) coalesce(l.retried_5m, 0) as retried_5m,
        h.dead_5m operator(pg_catalog.+) coalesce(l.dead_5m, 0) as dead_5m,
        h.completed_1h operator(pg_catalog.+) coalesce(l.completed_1h, 0) as completed_1h,
        h.retried_1h operator(pg_catalog.+) coalesce(l.retried_1h, 0) as retried_1h,
        h.dead_1h operator(pg_catalog.+) coalesce(l.dead_1h, 0) as dead_1h,
        h.timed_5m operator(pg_catalog.+) coalesce(l.timed_5m, 0) as timed_5m,
        h.ms_5m operator(pg_catalog.+) coalesce(l.ms_5m, 0) as ms_5m,
        h.timed_1h operator(pg_catalog.+) coalesce(l.timed_1h, 0) as timed_1h,
        h.ms_1h operator(pg_catalog.+) coalesce(l.ms_1h, 0) as ms_1h,
        coalesce(l.enqueued_log, 0) as enqueued_log,
        (
            -- The 95th percentile of the 5m window: the histogram bucket that
            -- holds it (from the folded minutes and the log), interpolated
            -- linearly inside it. Buckets (sql/020's _duration_histogram), in
            -- order of duration: 26 is [0, 2^-10) ms, i (27..35) is
            -- [2^(i-37), 2^(i-36)) ms, 1 is [0.5, 1) ms ([0, 1) ms when only
            -- 0.1.0's 25 buckets are there), i (2..24) is [2^(i-2), 2^(i-1))
            -- ms, 25 is 2^23 ms and up (its lower bound is reported).
            select case
                when y.i operator(pg_catalog.=) 25 then pg_catalog.power(2, 23)
                else y.lo operator(pg_catalog.+) ((y.hi operator(pg_catalog.-) y.lo) operator(pg_catalog.*) y.frac)
            end
            from (
                select
                    z.i,
                    z.lo,
                    z.hi,
                    ((0.95 operator(pg_catalog.*) z.total) operator(pg_catalog.-) (z.cum operator(pg_catalog.-) z.n)) operator(pg_catalog./) z.n as frac
                from (
                    select
                        x.i,
                        x.n,
                        pg_catalog.sum(x.n) over (order by x.ord) as cum,
                        pg_catalog.sum(x.n) over () as total,
                        case
                            when x.i operator(pg_catalog.=) 26 then 0
                            when x.i operator(pg_catalog.>) 26 then pg_catalog.power(2, x.i operator(pg_catalog.-) 37)
                            when x.i operator(pg_catalog.>) 1 then pg_catalog.power(2, x.i operator(pg_catalog.-) 2)
                            when pg_catalog.max(x.i) over () operator(pg_catalog.<=) 25 then 0
                            else 0.5
                        end as lo,
                        case
                            when x.i operator(pg_catalog.>=) 26 then pg_catalog.power(2, x.i operator(pg_catalog.-) 36)
                            else pg_catalog.power(2, x.i operator(pg_catalog.-) 1)
                        end as hi
                    from (
                        select
                            u.i,
                            case
                                when u.i operator(pg_catalog.>=) 26 then u.i operator(pg_catalog.-) 26
                                else u.i operator(pg_catalog.+) 9
                            end as ord,
                            pg_catalog.sum(u.n) as n
                        from (
                            select b.i, b.n
                            from pgmq_jobs.queue_history as hb
                            cross join lateral pg_catalog.unnest(hb.duration_buckets) with ordinality as b (n, i)
                            where hb.queue operator(pg_catalog.=) qs.queue and hb.minute operator(pg_catalog.>=) w.since_5m
                            union all
                            select lb.i, lb.n from log_buckets as lb
                            where lb.queue operator(pg_catalog.=) qs.queue
                        ) as u
                        group by u.i
                    ) as x
                ) as z
                where z.n operator(pg_catalog.>) 0 and z.cum operator(pg_catalog.>=) (0.95 operator(pg_catalog.*) z.total)
                    and (z.cum operator(pg_catalog.-) z.n) operator(pg_catalog.<) (0.95 operator(pg_catalog.*) z.total)
            ) as y
        )::double precision as p95_ms_5m,
        extract(epoch from w.t operator(pg_catalog.-) w.since_1m)::double precision as span_1m,
        extract(epoch from w.t operator(pg_catalog.-) w.since_5m)::double precision as span_5m,
        extract(epoch from w.t operator(pg_catalog.-) w.since_1h)::double precision as span_1h
    from pgmq_jobs.queue_settings as qs
    cross join w
    cross join lateral pgmq_jobs._queue_gauges(qs.queue, w.cap) as g
    cross join lateral (
        select
            coalesce(pg_catalog.sum(hh.completed) filter (where hh.minute operator(pg_catalog.>=) w.since_1m), 0) as completed_1m,
            coalesce(pg_catalog.sum(hh.retried) filter (where hh.minute operator(pg_catalog.>=) w.since_1m), 0) as retried_1m,
            coalesce(pg_catalog.sum(hh.dead operator(pg_catalog.+) hh.expired) filter (where hh.minute operator(pg_catalog.>=) w.since_1m), 0) as dead_1m,
            coalesce(pg_catalog.sum(hh.completed) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as completed_5m,
            coalesce(pg_catalog.sum(hh.retried) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as retried_5m,
            coalesce(pg_catalog.sum(hh.dead operator(pg_catalog.+) hh.expired) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as dead_5m,
            coalesce(pg_catalog.sum(hh.completed), 0) as completed_1h,
            coalesce(pg_catalog.sum(hh.retried), 0) as retried_1h,
            coalesce(pg_catalog.sum(hh.dead operator(pg_catalog.+) hh.expired), 0) as dead_1h,
            coalesce(pg_catalog.sum(hh.duration_count) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as timed_5m,
            coalesce(pg_catalog.sum(hh.duration_ms_sum) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as ms_5m,
            coalesce(pg_catalog.sum(hh.duration_count), 0) as timed_1h,
            coalesce(pg_catalog.sum(hh.duration_ms_sum), 0) as ms_1h
        from pgmq_jobs.queue_history as hh
        where hh.queue operator(pg_catalog.=) qs.queue and hh.minute operator(pg_catalog.>=) w.since_1h
    ) as h
    left join logged as l on qs.queue operator(pg_catalog.=) l.queue
)

select
    c.queue,
    c.ready,
    c.in_flight,
    c.delayed,
    c.dead,
    c.t operator(pg_catalog.-) c.oldest_ready_at as oldest_ready_age,
    c.completed_1m::bigint as completed_1m,
    c.retried_1m::bigint as retried_1m,
    c.dead_1m::bigint as dead_lettered_1m,
    c.completed_5m::bigint as completed_5m,
    c.retried_5m::bigint as retried_5m,
    c.dead_5m::bigint as dead_lettered_5m,
    c.completed_1h::bigint as completed_1h,
    c.retried_1h::bigint as retried_1h,
    c.dead_1h::bigint as dead_lettered_1h,
    c.completed_1m operator(pg_catalog./) c.span_1m as completed_rate_1m,
    c.retried_1m operator(pg_catalog./) c.span_1m as retried_rate_1m,
    c.dead_1m operator(pg_catalog./) c.span_1m as dead_lettered_rate_1m,
    c.completed_5m operator(pg_catalog./) c.span_5m as completed_rate_5m,
    c.retried_5m operator(pg_catalog./) c.span_5m as retried_rate_5m,
    c.dead_5m operator(pg_catalog./) c.span_5m as dead_lettered_rate_5m,
    c.completed_1h operator(pg_catalog./) c.span_1h as completed_rate_1h,
    c.retried_1h operator(pg_catalog./) c.span_1h as retried_rate_1h,
    c.dead_1h operator(pg_catalog./) c.span_1h as dead_lettered_rate_1h,
    (c.retried_5m operator(pg_catalog./) nullif(c.completed_5m operator(pg_catalog.+) c.retried_5m operator(pg_catalog.+) c.dead_5m, 0))::double precision as retry_rate_5m,
    (c.retried_1h operator(pg_catalog./) nullif(c.completed_1h operator(pg_catalog.+) c.retried_1h operator(pg_catalog.+) c.dead_1h, 0))::double precision as retry_rate_1h,
    c.timed_5m::bigint as timed_jobs_5m,
    (c.ms_5m operator(pg_catalog./) nullif(c.timed_5m, 0))::double precision as avg_processing_ms_5m,
    c.p95_ms_5m as p95_processing_ms_5m,
    (c.ms_1h operator(pg_catalog./) nullif(c.timed_1h, 0))::double precision as avg_processing_ms_1h,
    (
        select pg_catalog.count(*) from pgmq_jobs.workers as wk
        where wk.status operator(pg_catalog.=) 'alive' and c.queue operator(pg_catalog.=) any(wk.queues)
    ) as live_workers,
    (c.enqueued_total operator(pg_catalog.+) c.enqueued_log)::bigint as enqueued_total,
    c.ready_estimated,
    coalesce(c.dead_estimated, false) as dead_estimated,
    c.t as measured_at
from counted as c;
-- noqa: enable=LT01

comment on view pgmq_jobs.queue_stats is
'Metrics of every queue, cheap at any depth. ready / in_flight / delayed / dead: jobs visible
now, claimed and running, waiting for a later time (delay, retry backoff, group order), and dead
letters; each is an exact count up to pgmq_jobs.stats_count_cap rows (a setting, default 20000)
and beyond that an ESTIMATE from the table''s live-tuple statistics (ready_estimated says so for
ready and delayed, dead_estimated for dead). oldest_ready_age: how long the oldest
ready job has been waiting. completed / retried / dead_lettered (failed or expired to the DLQ)
_1m, _5m, _1h: exact counts from the start of the previous minute (1m), of the minute 5 minutes
ago (5m) or an hour ago (1h) until now, from queue_history plus the outcome log not yet folded;
*_rate_*: the same per second over that span (60-120 s, 5-6 min, 60-61 min). retry_rate_*:
retried / (completed + retried + dead_lettered). timed_jobs_5m, avg_processing_ms_5m,
p95_processing_ms_5m, avg_processing_ms_1h: handler durations that workers passed to complete
(durations_ms) over the 5m / 1h window; the average is exact, p95 is an ESTIMATE interpolated
inside its power-of-two histogram bucket (within a factor of two, from 2^-10 ms, about a
microsecond, up); null when none reported.
live_workers: workers alive that serve the queue. enqueued_total: jobs enqueued by committed
transactions (enqueue, enqueue_batch, schedules; not replays) since the queue was created, or
since the upgrade to 0.2.0 for an older queue: a rolled-back enqueue is never counted.';

revoke all on pgmq_jobs.queue_stats from public;
grant select on pgmq_jobs.queue_stats to pgmq_jobs_admin;
