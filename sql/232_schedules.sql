-- 232_schedules.sql: view schedules, every cron schedule with its last run.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.schedules as
select
    ss.name,
    ss.cron,
    ss.queue,
    ss.payload,
    coalesce(j.active, false) as active,
    j.jobid,
    j.last_run_at,
    j.last_status,
    j.last_message,
    pgmq_jobs._next_run_at(ss.cron) as next_run_at,
    ss.created_at,
    ss.updated_at
from pgmq_jobs.schedule_settings as ss
left join lateral pgmq_jobs._cron_job('pgmq_jobs_schedule_' operator(pg_catalog.||) ss.name) as j on true;
-- noqa: enable=LT01

comment on view pgmq_jobs.schedules is
'Cron schedules that enqueue jobs: expression, target queue, payload, whether pg_cron has the
job active, its last run''s start time, status and message, and (where PL/Python support is
installed) its next run';
