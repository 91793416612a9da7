-- 122_fail.sql: fail, report a failed delivery: retry later or dead-letter
-- (one delivery of fail_batch; the work is in _fail_deliveries).

create or replace function pgmq_jobs.fail(
    queue text,
    job_id bigint,
    attempt integer,
    error text,
    retry_after interval default null,
    permanent boolean default false
)
returns pgmq_jobs.fail_result
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    result pgmq_jobs.fail_result;
begin
    perform pgmq_jobs._check_delivery(job_id, attempt);
    if permanent is null then
        raise exception 'permanent must not be null' using errcode = '22004';
    end if;
    if retry_after is not null then
        perform pgmq_jobs._check_interval('retry_after', retry_after, interval '0', interval '3650 days');
    end if;
    select f.outcome, f.attempt, f.next_attempt_at into result
    from pgmq_jobs._fail_deliveries(
        queue, s, array[job_id], array[attempt], array[error],
        array[retry_after], array[permanent]
    ) as f;
    return result;
end
$$;

comment on function pgmq_jobs.fail(text, bigint, integer, text, interval, boolean) is
'Report that delivery attempt of job_id failed with error. outcome retry: visible again at
next_attempt_at, after min(retry_max, retry_base * retry_factor^(attempt-1)) with the queue''s
jitter, or after retry_after when given. outcome dead: permanent, or attempt reached
max_attempts; the job is in <queue>_dlq with every error. outcome stale: the delivery was
superseded and nothing changed. A job_id the queue never issued is an error.';
