-- 133_failing_jobs.sql: failing_jobs, jobs of a queue that failed at least
-- once and are still alive (waiting to retry or being retried), with their
-- error history.

create or replace function pgmq_jobs.failing_jobs(queue text, lim integer default 100)
returns table (
    job_id bigint,
    attempts integer,
    max_attempts integer,
    payload jsonb,
    errors jsonb,
    last_error text,
    next_attempt_at timestamptz,
    enqueued_at timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
begin
    if lim is null or lim < 1 or lim > 10000 then
        raise exception 'lim must be between 1 and 10000, got %', coalesce(lim::text, 'null')
            using errcode = '22023';
    end if;
    -- Only delivered jobs can have failed: the partial index over read_ct > 0
    -- keeps this away from the waiting backlog.
    return query execute format(
        $sql$
        select
            q.msg_id, q.read_ct, coalesce((q.headers ->> 'max_attempts')::integer, $2),
            q.message, q.headers -> 'errors', q.headers #>> '{errors,-1,error}',
            q.vt, q.enqueued_at
        from pgmq.%I as q
        where q.read_ct > 0 and q.headers ? 'errors'
        order by q.vt desc
        limit $1
        $sql$,
        'q_' || queue
    ) using lim, s.max_attempts;
end
$$;

comment on function pgmq_jobs.failing_jobs(text, integer) is
'Jobs of a queue that failed (or timed out) at least once and are not dead yet: attempts so
far, payload, every error with its time, and when the next attempt may run (or, while being
retried, until when the current delivery is hidden). Newest first, at most lim.';
