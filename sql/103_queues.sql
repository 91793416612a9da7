-- 103_queues.sql: view queues, every queue with its settings.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.queues as
select
    qs.queue,
    qs.queue operator(pg_catalog.||) '_dlq' as dead_letter_queue,
    qs.max_attempts,
    qs.visibility_timeout,
    qs.retry_base,
    qs.retry_max,
    qs.retry_factor,
    qs.jitter,
    qs.keep_completed,
    case when qs.keep_completed operator(pg_catalog.=) interval '0' then 'delete' else 'archive' end as on_complete,
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
-- noqa: enable=LT01

comment on view pgmq_jobs.queues is
'Every pgmq-jobs queue with its retry policy and limits';
