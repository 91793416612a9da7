-- 020_private_lifecycle_run.sql: private helper that runs one claimed job
-- through a queue's SQL handler and reports its outcome.

-- Run job through handler (schema.fn taking jsonb) in a subtransaction: its
-- effects commit with the completion, or roll back and the job fails with
-- the error text (and so retries with backoff, then dead-letters). SQLSTATE
-- PJ001 from the handler means a permanent failure. Returns the outcome:
-- completed, retry, dead or stale.
create or replace function pgmq_jobs._run_job(
    queue text, handler text, job pgmq_jobs.claimed_job
)
returns text
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    state text;
    message text;
    detail text;
begin
    perform pgmq_jobs._check_handler_trusted(handler);
    begin
        execute format('select %I.%I($1)', split_part(handler, '.', 1), split_part(handler, '.', 2))
            using job.payload;
        return case
            when pgmq_jobs.complete(queue, array[job.job_id], array[job.attempt]) = 1 then 'completed'
            else 'stale'
        end;
    exception when others then
        get stacked diagnostics state = returned_sqlstate, message = message_text, detail = pg_exception_detail;
    end;
    return (
        select f.outcome
        from pgmq_jobs.fail(
            queue, job.job_id, job.attempt,
            format('%s (SQLSTATE %s)%s', message, state,
                case when detail <> '' then E'\n' || detail else '' end),
            permanent => state = 'PJ001'
        ) as f
    );
end
$$;
