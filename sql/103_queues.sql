-- 103_queues.sql: view queues, every queue with its settings.

create or replace view pgmq_jobs.queues as
select
    qs.queue,
    qs.queue || '_dlq' as dead_letter_queue,
    qs.max_attempts,
    qs.visibility_timeout,
    qs.retry_base,
    qs.retry_max,
    qs.retry_factor,
    qs.jitter,
    qs.keep_completed,
    case when qs.keep_completed = interval '0' then 'delete' else 'archive' end as on_complete,
    qs.max_payload_bytes,
    qs.unlogged,
    qs.notify,
    qs.handler,
    qs.dead_letter_retention,
    qs.concurrency,
    qs.partitioned,
    qs.partition_interval,
    qs.retention_interval,
    qs.payload_schema,
    qs.created_at,
    qs.updated_at
from pgmq_jobs.queue_settings as qs;

comment on view pgmq_jobs.queues is
'Every pgmq-jobs queue with its retry policy and limits';
