-- 140_heartbeat.sql: heartbeat, a worker's periodic sign of life. One row per
-- worker process, updated every few seconds (never per job).

create table if not exists pgmq_jobs.worker_heartbeats (
    worker_id text primary key,
    host text,
    pid integer,
    queues text[] not null default '{}',
    started_at timestamptz not null default pg_catalog.now(),
    last_seen_at timestamptz not null default pg_catalog.now(),
    heartbeat_interval interval not null default interval '5 seconds',
    jobs_done bigint not null default 0,
    jobs_failed bigint not null default 0,
    in_flight integer not null default 0,
    stopped_at timestamptz
);
comment on table pgmq_jobs.worker_heartbeats is
'Last heartbeat of every worker process; read it through the pgmq_jobs.workers view';

create or replace function pgmq_jobs.heartbeat(
    worker_id text,
    queues text[],
    host text default null,
    pid integer default null,
    jobs_done bigint default 0,
    jobs_failed bigint default 0,
    in_flight integer default 0,
    heartbeat_interval interval default interval '5 seconds',
    stopping boolean default false
)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    seen timestamptz := clock_timestamp();
begin
    if worker_id is null or worker_id = '' or length(worker_id) > 200 then
        raise exception 'worker_id must be 1 to 200 characters' using errcode = '22023';
    end if;
    if array_ndims(queues) > 1 then
        raise exception 'queues must be a one-dimensional array' using errcode = '22023';
    end if;
    if queues is null or array_position(queues, null) is not null then
        raise exception 'queues must be an array of queue names without nulls'
            using errcode = '22023';
    end if;
    -- Bounded sizes: a heartbeat row stays small whoever sends it.
    if cardinality(queues) > 1000 then
        raise exception 'queues must hold at most 1000 queue names, got %',
            cardinality(queues)
            using errcode = '22023';
    end if;
    if exists (select from unnest(queues) as q where length(q) > 63) then
        raise exception 'queue names in queues must be at most 63 characters' using errcode = '22023';
    end if;
    if length(host) > 255 then
        raise exception 'host must be at most 255 characters, got %', length(host)
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_interval(
        'heartbeat_interval', heartbeat_interval, interval '0', interval '1 hour', true
    );
    if coalesce(jobs_done, -1) < 0 or coalesce(jobs_failed, -1) < 0
        or coalesce(in_flight, -1) < 0 then
        raise exception 'jobs_done, jobs_failed and in_flight must be non-negative'
            using errcode = '22023';
    end if;
    insert into pgmq_jobs.worker_heartbeats as w (
        worker_id, host, pid, queues, started_at, last_seen_at, heartbeat_interval,
        jobs_done, jobs_failed, in_flight, stopped_at
    )
    values (
        worker_id, host, pid, queues, seen, seen, heartbeat_interval,
        jobs_done, jobs_failed, in_flight, case when stopping then seen end
    )
    on conflict on constraint worker_heartbeats_pkey do update set
        host = excluded.host,
        pid = excluded.pid,
        queues = excluded.queues,
        last_seen_at = excluded.last_seen_at,
        heartbeat_interval = excluded.heartbeat_interval,
        jobs_done = excluded.jobs_done,
        jobs_failed = excluded.jobs_failed,
        in_flight = excluded.in_flight,
        stopped_at = excluded.stopped_at;
    if stopping then
        delete from pgmq_jobs.waiting_workers as w where w.worker_id = heartbeat.worker_id;
    end if;
    return seen;
end
$$;

comment on function pgmq_jobs.heartbeat(
    text, text[], text, integer, bigint, bigint, integer, interval, boolean
) is
'Record a worker''s sign of life: its queues, cumulative jobs done and failed, jobs in flight
and how often it beats. stopping => true marks a clean exit. Read by the workers view.';
