-- 125_fail_batch.sql: fail_batch, report many failed deliveries of a queue in
-- one statement (a worker's burst of failures in one round trip).

create or replace function pgmq_jobs.fail_batch(
    queue text,
    job_ids bigint[],
    attempts integer[],
    errors text[],
    retry_after interval[] default null,
    permanent boolean[] default null
)
returns table (job_id bigint, outcome text, attempt integer, next_attempt_at timestamptz)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    n integer;
    delay interval;
begin
    perform pgmq_jobs._check_deliveries(job_ids, attempts);
    n := cardinality(job_ids);
    if errors is null or cardinality(errors) <> n then
        raise exception 'errors must have one element per job, got % for % jobs',
            coalesce(cardinality(errors)::text, 'null'), n
            using errcode = '22023';
    end if;
    if retry_after is not null then
        if cardinality(retry_after) <> n then
            raise exception 'retry_after must have one element per job (null: the backoff), got % for % jobs',
                cardinality(retry_after), n
                using errcode = '22023';
        end if;
        foreach delay in array retry_after loop
            if delay is not null then
                perform pgmq_jobs._check_interval('retry_after', delay, interval '0', interval '3650 days');
            end if;
        end loop;
    end if;
    if permanent is not null then
        if cardinality(permanent) <> n then
            raise exception 'permanent must have one element per job, got % for % jobs',
                cardinality(permanent), n
                using errcode = '22023';
        end if;
        if array_position(permanent, null) is not null then
            raise exception 'permanent must not contain nulls' using errcode = '22004';
        end if;
    end if;
    if (select count(distinct j.id) from unnest(job_ids) as j (id)) <> n then
        raise exception 'job_ids must not repeat a job' using errcode = '22023';
    end if;
    if n = 0 then
        return;
    end if;
    return query
    select f.job_id, f.outcome, f.attempt, f.next_attempt_at
    from pgmq_jobs._fail_deliveries(
        queue, s, job_ids, attempts, errors,
        coalesce(retry_after, array_fill(null::interval, array[n])),
        coalesce(permanent, array_fill(false, array[n]))
    ) as f;
end
$$;

comment on function pgmq_jobs.fail_batch(text, bigint[], integer[], text[], interval[], boolean[]) is
'fail for many deliveries of a queue in one statement: job_ids[i] at attempts[i] failed with
errors[i]; retry_after[i] (null: the queue''s backoff) and permanent[i] as in fail (both
arrays optional). One row per job, in the order given: outcome retry (next_attempt_at),
dead or stale, as fail reports it. A job_id the queue never issued, or one given twice, is an
error and nothing is applied.';
