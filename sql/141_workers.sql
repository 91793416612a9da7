-- 141_workers.sql: view workers, worker health from their heartbeats.

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
        when w.last_seen_at < pg_catalog.now() - greatest(w.heartbeat_interval * 60, interval '10 minutes')
            then 'gone'
        when w.last_seen_at < pg_catalog.now() - w.heartbeat_interval * 3 then 'stale'
        else 'alive'
    end as status
from pgmq_jobs.worker_heartbeats as w;

comment on view pgmq_jobs.workers is
'Worker processes and their health: alive, stale (missed three heartbeats), or gone (stopped
cleanly, or silent for 10 minutes / 60 heartbeats)';
