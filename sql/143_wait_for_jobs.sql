-- 143_wait_for_jobs.sql: wait_for_jobs, a worker says it is idle and listening
-- for a queue's wake-ups (or no longer). Enqueues NOTIFY only while some
-- worker waits: a NOTIFY takes a cluster-wide lock at commit that serialises
-- the commits of concurrent producers, so busy queues (whose workers claim
-- again anyway) skip it.

create table if not exists pgmq_jobs.waiting_workers (
    queue text not null,
    worker_id text not null,
    since timestamptz not null default pg_catalog.clock_timestamp(),
    primary key (queue, worker_id)
);
comment on table pgmq_jobs.waiting_workers is
'Workers idle and listening for wake-ups of a queue; enqueue notifies only while one waits';

create or replace function pgmq_jobs.wait_for_jobs(worker_id text, queues text[], waiting boolean)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if worker_id is null or worker_id = '' or length(worker_id) > 200 then
        raise exception 'worker_id must be 1 to 200 characters' using errcode = '22023';
    end if;
    if array_ndims(queues) > 1 then
        raise exception 'queues must be a one-dimensional array' using errcode = '22023';
    end if;
    if queues is null or array_position(queues, null) is not null or waiting is null then
        raise exception 'queues (without nulls) and waiting must not be null' using errcode = '22004';
    end if;
    if cardinality(queues) > 1000 then
        raise exception 'queues must hold at most 1000 queue names, got %',
            cardinality(queues)
            using errcode = '22023';
    end if;
    if waiting then
        -- Only queues that exist: a worker cannot fill the table with names.
        insert into pgmq_jobs.waiting_workers as w (queue, worker_id)
        select qs.queue, wait_for_jobs.worker_id
        from pgmq_jobs.queue_settings as qs
        where qs.queue = any(queues)
        on conflict on constraint waiting_workers_pkey do nothing;
    else
        delete from pgmq_jobs.waiting_workers as w
        where w.worker_id = wait_for_jobs.worker_id and w.queue = any(queues);
    end if;
end
$$;

comment on function pgmq_jobs.wait_for_jobs(text, text[], boolean) is
'A worker marks itself idle and listening on NOTIFY pgmq_jobs_<queue> for these queues
(waiting => true; at most 1000 names, those of no queue are ignored), or busy again (false).
Enqueues send their wake-up NOTIFY only while some worker waits for the queue. The worker
must claim once more after marking itself waiting, so that a job committed just before is
not missed. A stopping heartbeat and the sweep (for workers no longer alive) clear the marks.';
