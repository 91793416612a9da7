-- 231_unschedule.sql: unschedule, remove a cron schedule by name.

create or replace function pgmq_jobs.unschedule(name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    removed boolean;
    queue text;
begin
    if name is null then
        raise exception 'schedule name must not be null' using errcode = '22004';
    end if;
    delete from pgmq_jobs.schedule_settings as ss where ss.name = unschedule.name
    returning ss.queue into queue;
    removed := found;
    removed := pgmq_jobs._cron_unschedule('pgmq_jobs_schedule_' || name) or removed;
    if removed then
        perform pgmq_jobs._audit(queue, 'unschedule', jsonb_build_object('name', name));
    end if;
    return removed;
end
$$;

comment on function pgmq_jobs.unschedule(text) is
'Remove the schedule of that name and its pg_cron job. Returns false when there was none.';
