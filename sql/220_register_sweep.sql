-- 220_register_sweep.sql: register sweep() as the pg_cron job
-- pgmq_jobs_sweep (every minute) where pg_cron is installed in this
-- database, and bring pg_partman's maintenance job up to date (an earlier
-- version had pg_cron call partman directly). pg_cron upserts by name, so
-- re-running never duplicates either.

do $register$
begin
    if pgmq_jobs._cron_ready() then
        if not exists (
            select from cron.job as j
            where j.jobname operator(pg_catalog.=) 'pgmq_jobs_sweep'
                and j.schedule operator(pg_catalog.=) '* * * * *'
                and j.command operator(pg_catalog.=) 'select pgmq_jobs.sweep()'
        ) then
            perform cron.schedule('pgmq_jobs_sweep', '* * * * *', 'select pgmq_jobs.sweep()');
        end if;
        perform pgmq_jobs._sync_partman_job();
    else
        raise notice 'pg_cron is not installed in this database: run `pgmq-jobs sweep` (or select pgmq_jobs.sweep()) every minute';
    end if;
end
$register$;
