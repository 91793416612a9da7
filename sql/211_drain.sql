-- 211_drain.sql: the loop pg_cron runs every minute for each queue with a
-- SQL handler: process in short transactions until the time budget is spent,
-- polling briefly when idle, so pickup takes well under a second instead of
-- a minute. It is a DO block (_drain_command), not a procedure: a routine
-- that COMMITs can carry neither SET search_path nor SECURITY DEFINER, and
-- Supabase's security advisor reports every routine without a pinned path.
-- All the work happens in pgmq_jobs._drain_step, which pins its search_path.

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
-- anything else. The command of the pgmq_jobs_process_<queue> jobs.
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

-- drain was 0.1.0's committing procedure; a routine that commits cannot pin
-- its search_path, so 0.2.0 runs the same loop as the DO block above. The
-- name stays for one release, pinned, to say what to call instead.
create or replace procedure pgmq_jobs.drain(queue text, max_seconds double precision default 55)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    raise exception 'pgmq_jobs.drain was removed in pgmq-jobs 0.2.0'
        using errcode = '0A000',
        detail = 'The pg_cron job pgmq_jobs_process_' || queue || ' runs the handler of queue '
            || quote_literal(queue) || ' every minute by itself.',
        hint = 'Run select pgmq_jobs.process(' || quote_literal(queue)
            || ', max_jobs, max_seconds) instead (one transaction per call), or pgmq-jobs worker.';
end
$$;

comment on procedure pgmq_jobs.drain (text, double precision) is
'Removed in 0.2.0 (kept for one release to say so): pg_cron''s pgmq_jobs_process_<queue>
job runs a queue''s SQL handler every minute by itself; by hand, call pgmq_jobs.process.';
