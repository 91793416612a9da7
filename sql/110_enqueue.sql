-- 110_enqueue.sql: enqueue, add one job in the caller's transaction.

create or replace function pgmq_jobs.enqueue(
    queue text,
    payload jsonb,
    delay interval default interval '0',
    run_at timestamptz default null,
    max_attempts integer default null
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    visible_at timestamptz;
    job_id bigint;
begin
    perform pgmq_jobs._check_payload(payload, s.max_payload_bytes);
    if run_at is not null and coalesce(delay, interval '0') <> interval '0' then
        raise exception 'give either delay or run_at, not both' using errcode = '22023';
    end if;
    if run_at is not null then
        if not isfinite(run_at) then
            raise exception 'run_at must be a finite time, got %', run_at using errcode = '22023';
        end if;
        visible_at := run_at;
    else
        perform pgmq_jobs._check_interval('delay', coalesce(delay, interval '0'),
            interval '0', interval '3650 days');
        visible_at := clock_timestamp() + coalesce(delay, interval '0');
    end if;
    if max_attempts is not null and (max_attempts < 1 or max_attempts > 1000) then
        raise exception 'max_attempts must be between 1 and 1000, got %', max_attempts
            using errcode = '22023';
    end if;
    select pgmq.send(
        queue,
        payload,
        case when max_attempts is null then null
            else jsonb_build_object('max_attempts', max_attempts) end,
        visible_at
    ) into job_id;
    if visible_at <= clock_timestamp() then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return job_id;
end
$$;

comment on function pgmq_jobs.enqueue(text, jsonb, interval, timestamptz, integer) is
'Enqueue one job and return its id. Transactional with the caller: rolled back, it never
existed. payload must be a JSON object within the queue''s size limit. delay (>= 0) or
run_at (not both) make it visible later; max_attempts overrides the queue''s for this job.';
