-- 232_schedules.sql: view schedules, every cron schedule with its last run.

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
left join lateral pgmq_jobs._cron_job('pgmq_jobs_schedule_' || ss.name) as j on true;

comment on view pgmq_jobs.schedules is
'Cron schedules that enqueue jobs: expression, target queue, payload, whether pg_cron has the
job active, its last run''s start time, status and message, and (where PL/Python support is
installed) its next run';
