-- 122_fail.sql: fail, report a failed delivery: retry later or dead-letter.

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
    headers jsonb;
    open_attempt integer;
    max_attempts integer;
    entry jsonb;
    dead_id bigint;
    group_key text;
    next_at timestamptz;
    result pgmq_jobs.fail_result;
begin
    perform pgmq_jobs._check_delivery(job_id, attempt);
    if permanent is null then
        raise exception 'permanent must not be null' using errcode = '22004';
    end if;
    if retry_after is not null then
        perform pgmq_jobs._check_interval('retry_after', retry_after, interval '0', interval '3650 days');
    end if;
    result.attempt := attempt;

    execute format(
        'select q.headers, q.read_ct from pgmq.%I as q where q.msg_id = $1 and q.read_ct = $2 and %s',
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into headers, open_attempt using job_id, attempt;
    if open_attempt is null then
        perform pgmq_jobs._check_job_issued(queue, job_id);
        result.outcome := 'stale';
        return result;
    end if;

    max_attempts := coalesce((headers ->> 'max_attempts')::integer, s.max_attempts);
    entry := pgmq_jobs._error_entry(attempt, error, headers -> 'worker', clock_timestamp());

    if permanent or attempt >= max_attempts then
        -- Move to the dead-letter queue; the fence is in the delete itself.
        execute format(
            $sql$
            with dead as (
                delete from pgmq.%1$I as q
                where q.msg_id = $1 and q.read_ct = $2 and %4$s
                returning q.msg_id, q.read_ct, q.enqueued_at, q.message, q.headers
            )
            insert into pgmq.%2$I (vt, message)
            select clock_timestamp(), pgmq_jobs._dead_letter(
                %3$L, d.msg_id, d.message, d.read_ct, d.headers, d.enqueued_at, $3, $4
            )
            from dead as d
            returning msg_id, message ->> 'group_key'
            $sql$,
            'q_' || queue, 'q_' || queue || '_dlq', queue, pgmq_jobs._sql_open_delivery('q')
        ) into dead_id, group_key
        using job_id, attempt, case when permanent then 'permanent' else 'exhausted' end, entry;
        if group_key is not null then
            perform pgmq_jobs._release_groups(queue, array[group_key]);
        end if;
        result.outcome := case when dead_id is null then 'stale' else 'dead' end;
        if dead_id is not null then
            insert into pgmq_jobs.outcome_log (queue, dead) values (queue, 1);
        end if;
        return result;
    end if;

    execute format(
        $sql$
        update pgmq.%I as q
        set
            vt = clock_timestamp() + $3,
            headers = jsonb_set(
                coalesce(q.headers, '{}'), '{errors}', coalesce(q.headers -> 'errors', '[]') || $4
            )
        where q.msg_id = $1 and q.read_ct = $2 and %2$s
        returning q.vt
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into next_at
    using job_id, attempt,
        coalesce(retry_after,
            pgmq_jobs._retry_delay(attempt, s.retry_base, s.retry_max, s.retry_factor, s.jitter)),
        entry;
    result.outcome := case when next_at is null then 'stale' else 'retry' end;
    result.next_attempt_at := next_at;
    if next_at is not null then
        insert into pgmq_jobs.outcome_log (queue, retried) values (queue, 1);
    end if;
    return result;
end
$$;

comment on function pgmq_jobs.fail(text, bigint, integer, text, interval, boolean) is
'Report that delivery attempt of job_id failed with error. outcome retry: visible again at
next_attempt_at, after min(retry_max, retry_base * retry_factor^(attempt-1)) with the queue''s
jitter, or after retry_after when given. outcome dead: permanent, or attempt reached
max_attempts; the job is in <queue>_dlq with every error. outcome stale: the delivery was
superseded and nothing changed. A job_id the queue never issued is an error.';
