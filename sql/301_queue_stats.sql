-- 301_queue_stats.sql: view queue_stats, one row of metrics per queue, cheap at
-- any depth: gauges, outcome counts and rates, processing times, live workers.
--
-- Windows: *_1m counts from the start of the previous minute until now (60 to
-- 120 s), *_5m from the start of the minute five minutes ago (5 to 6 min), *_1h
-- likewise (60 to 61 min); rates divide by that span, so they are per second
-- over exactly what was counted. Counts come from queue_history (minutes the
-- sweep folded) plus the outcome_log rows not folded yet, read in one snapshot,
-- so they are current without waiting for a sweep and never counted twice.

create or replace view pgmq_jobs.queue_stats as
with w as (
    select
        x.t,
        date_trunc('minute', x.t - interval '1 minute') as since_1m,
        date_trunc('minute', x.t - interval '5 minutes') as since_5m,
        date_trunc('minute', x.t - interval '1 hour') as since_1h,
        coalesce(nullif(current_setting('pgmq_jobs.stats_count_cap', true), '')::integer, 20000) as cap
    from (select statement_timestamp() as t) as x
),

logged as (
    select
        o.queue,
        coalesce(sum(o.completed) filter (where o.at >= w.since_1m), 0) as completed_1m,
        coalesce(sum(o.retried) filter (where o.at >= w.since_1m), 0) as retried_1m,
        coalesce(sum(o.dead + o.expired) filter (where o.at >= w.since_1m), 0) as dead_1m,
        coalesce(sum(o.completed) filter (where o.at >= w.since_5m), 0) as completed_5m,
        coalesce(sum(o.retried) filter (where o.at >= w.since_5m), 0) as retried_5m,
        coalesce(sum(o.dead + o.expired) filter (where o.at >= w.since_5m), 0) as dead_5m,
        coalesce(sum(o.completed), 0) as completed_1h,
        coalesce(sum(o.retried), 0) as retried_1h,
        coalesce(sum(o.dead + o.expired), 0) as dead_1h,
        coalesce(sum(o.duration_count) filter (where o.at >= w.since_5m), 0) as timed_5m,
        coalesce(sum(o.duration_ms_sum) filter (where o.at >= w.since_5m), 0) as ms_5m,
        coalesce(sum(o.duration_count), 0) as timed_1h,
        coalesce(sum(o.duration_ms_sum), 0) as ms_1h
    from pgmq_jobs.outcome_log as o
    cross join w
    where o.at >= w.since_1h
    group by o.queue
),

log_buckets as (
    select
        o.queue,
        b.i,
        sum(b.n) as n
    from pgmq_jobs.outcome_log as o
    cross join w
    cross join lateral unnest(o.duration_buckets) with ordinality as b (n, i)
    where o.at >= w.since_5m
    group by o.queue, b.i
),

counted as (
    select
        qs.queue,
        w.t,
        g.*,
        h.completed_1m + coalesce(l.completed_1m, 0) as completed_1m,
        h.retried_1m + coalesce(l.retried_1m, 0) as retried_1m,
        h.dead_1m + coalesce(l.dead_1m, 0) as dead_1m,
        h.completed_5m + coalesce(l.completed_5m, 0) as completed_5m,
        h.retried_5m + coalesce(l.retried_5m, 0) as retried_5m,
        h.dead_5m + coalesce(l.dead_5m, 0) as dead_5m,
        h.completed_1h + coalesce(l.completed_1h, 0) as completed_1h,
        h.retried_1h + coalesce(l.retried_1h, 0) as retried_1h,
        h.dead_1h + coalesce(l.dead_1h, 0) as dead_1h,
        h.timed_5m + coalesce(l.timed_5m, 0) as timed_5m,
        h.ms_5m + coalesce(l.ms_5m, 0) as ms_5m,
        h.timed_1h + coalesce(l.timed_1h, 0) as timed_1h,
        h.ms_1h + coalesce(l.ms_1h, 0) as ms_1h,
        (
            -- The 95th percentile of the 5m window: the histogram bucket that
            -- holds it (from the folded minutes and the log), interpolated
            -- linearly inside it. Bucket 1 is [0, 1) ms, bucket i (2..24) is
            -- [2^(i-2), 2^(i-1)) ms, bucket 25 is 2^23 ms and up (its lower
            -- bound is reported).
            select case
                when y.i = 1 then y.frac
                when y.i >= 25 then power(2, 23)
                else power(2, y.i - 2) * (1 + y.frac)
            end
            from (
                select
                    z.i,
                    (0.95 * z.total - (z.cum - z.n)) / z.n as frac
                from (
                    select
                        x.i,
                        x.n,
                        sum(x.n) over (order by x.i) as cum,
                        sum(x.n) over () as total
                    from (
                        select u.i, sum(u.n) as n
                        from (
                            select b.i, b.n
                            from pgmq_jobs.queue_history as hb
                            cross join lateral unnest(hb.duration_buckets) with ordinality as b (n, i)
                            where hb.queue = qs.queue and hb.minute >= w.since_5m
                            union all
                            select lb.i, lb.n from log_buckets as lb
                            where lb.queue = qs.queue
                        ) as u
                        group by u.i
                    ) as x
                ) as z
                where z.n > 0 and z.cum >= 0.95 * z.total and z.cum - z.n < 0.95 * z.total
            ) as y
        )::double precision as p95_ms_5m,
        extract(epoch from w.t - w.since_1m)::double precision as span_1m,
        extract(epoch from w.t - w.since_5m)::double precision as span_5m,
        extract(epoch from w.t - w.since_1h)::double precision as span_1h
    from pgmq_jobs.queue_settings as qs
    cross join w
    cross join lateral pgmq_jobs._queue_gauges(qs.queue, w.cap) as g
    cross join lateral (
        select
            coalesce(sum(hh.completed) filter (where hh.minute >= w.since_1m), 0) as completed_1m,
            coalesce(sum(hh.retried) filter (where hh.minute >= w.since_1m), 0) as retried_1m,
            coalesce(sum(hh.dead + hh.expired) filter (where hh.minute >= w.since_1m), 0) as dead_1m,
            coalesce(sum(hh.completed) filter (where hh.minute >= w.since_5m), 0) as completed_5m,
            coalesce(sum(hh.retried) filter (where hh.minute >= w.since_5m), 0) as retried_5m,
            coalesce(sum(hh.dead + hh.expired) filter (where hh.minute >= w.since_5m), 0) as dead_5m,
            coalesce(sum(hh.completed), 0) as completed_1h,
            coalesce(sum(hh.retried), 0) as retried_1h,
            coalesce(sum(hh.dead + hh.expired), 0) as dead_1h,
            coalesce(sum(hh.duration_count) filter (where hh.minute >= w.since_5m), 0) as timed_5m,
            coalesce(sum(hh.duration_ms_sum) filter (where hh.minute >= w.since_5m), 0) as ms_5m,
            coalesce(sum(hh.duration_count), 0) as timed_1h,
            coalesce(sum(hh.duration_ms_sum), 0) as ms_1h
        from pgmq_jobs.queue_history as hh
        where hh.queue = qs.queue and hh.minute >= w.since_1h
    ) as h
    left join logged as l on qs.queue = l.queue
)

select
    c.queue,
    c.ready,
    c.in_flight,
    c.delayed,
    c.dead,
    c.t - c.oldest_ready_at as oldest_ready_age,
    c.completed_1m::bigint as completed_1m,
    c.retried_1m::bigint as retried_1m,
    c.dead_1m::bigint as dead_lettered_1m,
    c.completed_5m::bigint as completed_5m,
    c.retried_5m::bigint as retried_5m,
    c.dead_5m::bigint as dead_lettered_5m,
    c.completed_1h::bigint as completed_1h,
    c.retried_1h::bigint as retried_1h,
    c.dead_1h::bigint as dead_lettered_1h,
    c.completed_1m / c.span_1m as completed_rate_1m,
    c.retried_1m / c.span_1m as retried_rate_1m,
    c.dead_1m / c.span_1m as dead_lettered_rate_1m,
    c.completed_5m / c.span_5m as completed_rate_5m,
    c.retried_5m / c.span_5m as retried_rate_5m,
    c.dead_5m / c.span_5m as dead_lettered_rate_5m,
    c.completed_1h / c.span_1h as completed_rate_1h,
    c.retried_1h / c.span_1h as retried_rate_1h,
    c.dead_1h / c.span_1h as dead_lettered_rate_1h,
    (c.retried_5m / nullif(c.completed_5m + c.retried_5m + c.dead_5m, 0))::double precision as retry_rate_5m,
    (c.retried_1h / nullif(c.completed_1h + c.retried_1h + c.dead_1h, 0))::double precision as retry_rate_1h,
    c.timed_5m::bigint as timed_jobs_5m,
    (c.ms_5m / nullif(c.timed_5m, 0))::double precision as avg_processing_ms_5m,
    c.p95_ms_5m as p95_processing_ms_5m,
    (c.ms_1h / nullif(c.timed_1h, 0))::double precision as avg_processing_ms_1h,
    (
        select count(*) from pgmq_jobs.workers as wk
        where wk.status = 'alive' and c.queue = any(wk.queues)
    ) as live_workers,
    c.enqueued_total,
    c.ready_estimated,
    coalesce(c.dead_estimated, false) as dead_estimated,
    c.t as measured_at
from counted as c;

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
inside its power-of-two histogram bucket (within a factor of two); null when none reported.
live_workers: workers alive that serve the queue. enqueued_total: jobs ever sent (the msg_id
sequence).';

revoke all on pgmq_jobs.queue_stats from public;
grant select on pgmq_jobs.queue_stats to pgmq_jobs_admin;
