-- 141_workers.sql: view workers, worker health from their heartbeats.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.workers as
select
    w.worker_id,
    w.host,
    w.pid,
    w.queues,
    w.started_at,
    w.last_seen_at,
    w.heartbeat_interval,
    w.jobs_done,
    w.jobs_failed,
    w.in_flight,
    w.stopped_at,
    case
        when w.stopped_at is not null then 'gone'
        when w.last_seen_at operator(pg_catalog.<) (
            pg_catalog.now() operator(pg_catalog.-) greatest(w.heartbeat_interval operator(pg_catalog.*) 60, interval '10 minutes')
        )
            then 'gone'
        when w.last_seen_at operator(pg_catalog.<) (
            pg_catalog.now() operator(pg_catalog.-) (w.heartbeat_interval operator(pg_catalog.*) 3)
        ) then 'stale'
        else 'alive'
    end as status
from pgmq_jobs.worker_heartbeats as w;
-- noqa: enable=LT01

comment on view pgmq_jobs.workers is
'Worker processes and their health: alive, stale (missed three heartbeats), or gone (stopped
cleanly, or silent for 10 minutes / 60 heartbeats)';
