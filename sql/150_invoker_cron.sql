-- 150_invoker_cron.sql: schedule_invoker, let pg_cron call the HTTP invoker
-- (`pgmq-jobs serve`, or an Edge Function speaking the same protocol) through
-- pg_net, so that jobs run without any long-lived worker process.
--
-- Created everywhere; usable only where pg_cron and pg_net are installed, which
-- is checked when it is called. The secret ends up in the text of the cron job
-- (cron.job.command), readable by whoever can read that job.
--
-- The pg_cron job is named pgmq_jobs_invoke_<job_name>: a caller's name never
-- reaches a foreign job, nor the project's own sweep, partman and handler jobs.

create or replace function pgmq_jobs.schedule_invoker(
    job_name text,
    schedule text,
    url text,
    queue text,
    secret text,
    max_seconds integer default 50,
    max_jobs integer default null
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cron_name text := pgmq_jobs._invoke_job_name(job_name);
    body jsonb;
    headers jsonb;
    command text;
begin
    if not exists (select from pg_catalog.pg_extension where extname = 'pg_net') then
        raise exception 'schedule_invoker needs the pg_net extension, which is not installed in this database'
            using errcode = '55000',
            hint = 'create extension pg_net (Supabase: Database, Extensions), or run '
                || '`pgmq-jobs worker --drain --max-seconds 50` from a system cron instead';
    end if;
    if not exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
        raise exception 'schedule_invoker needs the pg_cron extension, which is not installed in this database'
            using errcode = '55000',
            hint = 'create extension pg_cron, or run '
                || '`pgmq-jobs worker --drain --max-seconds 50` from a system cron instead';
    end if;
    perform pgmq_jobs._settings(queue);
    if url is null or url !~ '^https?://' then
        raise exception 'url must be an http(s) URL of the invoker, got %', coalesce(url, 'null')
            using errcode = '22023';
    end if;
    if secret is null or length(secret) < 16 then
        raise exception 'secret must be at least 16 characters' using errcode = '22023';
    end if;
    if max_seconds is null or max_seconds < 1 or max_seconds > 3600 then
        raise exception 'max_seconds must be between 1 and 3600, got %', coalesce(max_seconds::text, 'null')
            using errcode = '22023';
    end if;
    if max_jobs is not null and max_jobs < 1 then
        raise exception 'max_jobs must be positive, got %', max_jobs using errcode = '22023';
    end if;

    body := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'queue', queue, 'max_seconds', max_seconds, 'max_jobs', max_jobs
    ));
    headers := pg_catalog.jsonb_build_object(
        'Content-Type', 'application/json', 'Authorization', 'Bearer ' || secret
    );
    command := pg_catalog.format(
        'select net.http_post(url := %L, body := %L::jsonb, headers := %L::jsonb, '
        'timeout_milliseconds := %s)',
        url, body, headers, (max_seconds + 10) * 1000
    );
    return pgmq_jobs._cron_schedule(cron_name, schedule, command);
end
$$;

comment on function pgmq_jobs.schedule_invoker(text, text, text, text, text, integer, integer) is
'Create (or replace, by job_name) the pg_cron job pgmq_jobs_invoke_<job_name> that POSTs
{"queue", "max_seconds", "max_jobs"} to the HTTP invoker at url with Authorization: Bearer
secret, through pg_net, on schedule (cron syntax; pg_cron 1.5+ also takes ''10 seconds'').
job_name: 1 to 46 lowercase letters, digits, _ . -. Returns the cron job id; remove it with
pgmq_jobs.unschedule_invoker(job_name). Needs pg_cron and pg_net (checked here, with a clear
error); without them run `pgmq-jobs worker --drain` from a system cron. The secret is stored in
the cron job.';
