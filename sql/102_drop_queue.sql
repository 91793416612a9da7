-- 102_drop_queue.sql: drop_queue, remove a queue, its dead letters and settings.

create or replace function pgmq_jobs.drop_queue(queue text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    perform pg_advisory_xact_lock(hashtext('pgmq_jobs.queue:' || queue));
    delete from pgmq_jobs.queue_settings as qs where qs.queue = drop_queue.queue;
    if not found then
        -- Dropped concurrently by another session while we waited for the lock.
        return false;
    end if;
    perform pgmq_jobs._cron_unschedule('pgmq_jobs_process_' || queue);
    -- Schedules that enqueue into it would fail every time from now on.
    perform pgmq_jobs.unschedule(ss.name)
    from pgmq_jobs.schedule_settings as ss
    where ss.queue = drop_queue.queue;
    perform pgmq.drop_queue(queue);
    perform pgmq.drop_queue(queue || '_dlq');
    perform pgmq_jobs._sync_partman_job();
    delete from pgmq_jobs.dedupe_keys as k where k.queue = drop_queue.queue;
    delete from pgmq_jobs.alert_thresholds as t where t.queue = drop_queue.queue;
    perform pgmq_jobs._audit(queue, 'drop_queue', '{}');
    return true;
end
$$;

comment on function pgmq_jobs.drop_queue(text) is
'Drop a queue with all its jobs, archive and dead letters, its cron schedules and its SQL
handler''s pg_cron job. Unknown queue: an error.';
