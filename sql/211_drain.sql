-- 211_drain.sql: drain, the procedure pg_cron calls every minute for each
-- queue with a SQL handler: process in short transactions until the time
-- budget is spent, polling briefly when idle, so pickup takes well under a
-- second instead of a minute.
--
-- A procedure that COMMITs can carry neither SET search_path nor SECURITY
-- DEFINER (PostgreSQL forbids transaction control there), so this one pins
-- nothing itself: it calls only schema-qualified functions and uses no
-- operator (those resolve through the caller's search_path), and all the work
-- happens in pgmq_jobs._drain_step, which pins its search_path.

-- One step of drain: 'done' once max_seconds since started have passed,
-- else process a batch ('busy'), or wait 0.2 s when nothing was ready ('idle').
create or replace function pgmq_jobs._drain_step(
    queue text, started timestamptz, max_seconds double precision
)
returns text
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    left_s double precision;
begin
    if max_seconds is null or not (max_seconds > 0 and max_seconds <= 3600) then
        raise exception 'max_seconds must be greater than 0 and at most 3600, got %',
            coalesce(max_seconds::text, 'null')
            using errcode = '22023';
    end if;
    left_s := max_seconds - extract(epoch from clock_timestamp() - started);
    if left_s <= 0 then
        return 'done';
    end if;
    if (pgmq_jobs.process(queue, 100, least(5, left_s)) ->> 'claimed')::integer > 0 then
        return 'busy';
    end if;
    perform pg_sleep(least(0.2, left_s));
    return 'idle';
end
$$;

-- The same loop as a DO block, for a pg_cron job to run. Supabase's security
-- advisor reports every routine without a pinned search_path, and a procedure
-- that commits cannot pin one (issue 18, finding 10); a DO block is no routine,
-- and it pins the path of its own session (pg_cron opens one per run) before
-- anything else. Meant to replace `call pgmq_jobs.drain(queue, 55)` as the
-- command of the pgmq_jobs_process_<queue> jobs, after which drain can go.
create or replace function pgmq_jobs._drain_command(queue text, max_seconds double precision default 55)
returns text
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
    select format(
        $cmd$do $drain$
declare
    started timestamptz := pg_catalog.clock_timestamp();
    lock_key bigint := pg_catalog.hashtext(%L);
begin
    perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false);
    -- One drainer per queue: a run that finds another still going returns.
    if not pg_catalog.pg_try_advisory_lock(lock_key) then
        return;
    end if;
    while pgmq_jobs._drain_step(%L, started, %L::double precision) operator(pg_catalog.<>) 'done' loop
        commit;
    end loop;
    perform pg_catalog.pg_advisory_unlock(lock_key);
end
$drain$
$cmd$,
        'pgmq_jobs.drain:' || queue, queue, max_seconds
    )
$$;

create or replace procedure pgmq_jobs.drain(queue text, max_seconds double precision default 55)
language plpgsql
as $$
declare
    started timestamptz := pg_catalog.clock_timestamp();
    lock_key bigint := pg_catalog.hashtext(pg_catalog.concat('pgmq_jobs.drain:', queue));
    step text;
begin
    -- One drainer per queue: a run that finds another still going returns.
    if not pg_catalog.pg_try_advisory_lock(lock_key) then
        return;
    end if;
    loop
        step := pgmq_jobs._drain_step(queue, started, max_seconds);
        commit;
        exit when pg_catalog.texteq(step, 'done');
    end loop;
    perform pg_catalog.pg_advisory_unlock(lock_key);
end
$$;

comment on procedure pgmq_jobs.drain (text, double precision) is
'Run a queue''s SQL handler for max_seconds: process() in short committed batches, polling
every 0.2 s when idle. pg_cron calls it every minute per handled queue (call
pgmq_jobs.drain(''queue'', 55)); one drainer per queue at a time.';
