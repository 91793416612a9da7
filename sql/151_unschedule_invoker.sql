-- 151_unschedule_invoker.sql: unschedule_invoker, remove an invoker schedule
-- made by schedule_invoker (pg_net) or pgmq_jobs_plpy.schedule_invoke.

-- Only ever the pg_cron job pgmq_jobs_invoke_<job_name>: never a foreign job,
-- nor the project's sweep, partman and handler jobs.
create or replace function pgmq_jobs.unschedule_invoker(job_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return pgmq_jobs._cron_unschedule(pgmq_jobs._invoke_job_name(job_name));
end
$$;

comment on function pgmq_jobs.unschedule_invoker(text) is
'Remove the pg_cron job pgmq_jobs_invoke_<job_name> made by schedule_invoker (or by
pgmq_jobs_plpy.schedule_invoke); true when one was removed, false when there was none.';
