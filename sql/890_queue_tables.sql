-- 890_queue_tables.sql: every existing queue gets the indexes and privileges
-- a new queue is created with (sql/055_private_queue_tables.sql), and its
-- handler's pg_cron job this release's command. On a fresh
-- install there is no queue yet; on an upgrade this brings the queues of an
-- earlier release up to date. Idempotent: an index that exists is kept.

do $queue_tables$
declare
    s record;
begin
    for s in
        select qs.queue, qs.partitioned from pgmq_jobs.queue_settings as qs order by qs.queue
    loop
        -- pgmq-jobs install sets pgmq_jobs.defer_priority_index: it builds a
        -- deep queue's priority index concurrently after this transaction.
        update pgmq_jobs.queue_settings as qs
        set priority_index = pgmq_jobs._queue_indexes(
            s.queue, s.partitioned,
            coalesce(pg_catalog.current_setting('pgmq_jobs.defer_priority_index', true), '')
            operator(pg_catalog.=) 'on'
        )
        where qs.queue operator(pg_catalog.=) s.queue;
        perform pgmq_jobs._revoke_monitor_read(s.queue);
        -- The pg_cron job of a queue with a SQL handler runs this release's
        -- command (0.1.0's called the drain procedure).
        perform pgmq_jobs._sync_handler_job(s.queue);
    end loop;
end
$queue_tables$;
