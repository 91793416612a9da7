-- 304_outcome_totals.sql: outcome_totals, cumulative outcome counts per queue
-- since a time: the counters of the Prometheus exporter.

create or replace function pgmq_jobs.outcome_totals(since timestamptz)
returns table (
    queue text,
    completed bigint,
    retried bigint,
    dead bigint,
    expired bigint
)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    -- Folded minutes from queue_history plus the outcome log not folded yet,
    -- in one snapshot: the sweep moves rows from one to the other within a
    -- statement, so a total never drops. since is rounded down to its minute.
    select
        qs.queue,
        (coalesce(h.completed, 0) + coalesce(o.completed, 0))::bigint,
        (coalesce(h.retried, 0) + coalesce(o.retried, 0))::bigint,
        (coalesce(h.dead, 0) + coalesce(o.dead, 0))::bigint,
        (coalesce(h.expired, 0) + coalesce(o.expired, 0))::bigint
    from pgmq_jobs.queue_settings as qs
    cross join lateral (
        select sum(x.completed) as completed, sum(x.retried) as retried, sum(x.dead) as dead,
            sum(x.expired) as expired
        from pgmq_jobs.queue_history as x
        where x.queue = qs.queue and x.minute >= date_trunc('minute', outcome_totals.since)
    ) as h
    cross join lateral (
        select sum(x.completed) as completed, sum(x.retried) as retried, sum(x.dead) as dead,
            sum(x.expired) as expired
        from pgmq_jobs.outcome_log as x
        where x.queue = qs.queue and x.at >= date_trunc('minute', outcome_totals.since)
    ) as o
    order by qs.queue
$$;

comment on function pgmq_jobs.outcome_totals(timestamptz) is
'Outcome counts of every queue since a time (rounded down to its minute): completed, retried,
dead (failed into the DLQ) and expired (routed to the DLQ after a lost last delivery), from
queue_history plus the outcome log not folded yet. Monotonic while history is kept: the
Prometheus exporter serves them as counters since its start.';
