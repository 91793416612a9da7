-- 210_process.sql: process, run a queue's jobs through its SQL handler inside
-- the database: no runner needed.

create or replace function pgmq_jobs.process(
    queue text, max_jobs integer default 100, max_seconds double precision default 10
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    started timestamptz := clock_timestamp();
    deadline timestamptz;
    job pgmq_jobs.claimed_job;
    outcome text;
    got integer;
    tally jsonb := '{"claimed": 0, "completed": 0, "retry": 0, "dead": 0, "stale": 0}';
    -- The wrapper that calls the bound handler (see _handler_wrapper), made
    -- for the first job and again whenever the queue's handler changes.
    wrapper oid;
    wrapper_for oid;
begin
    if s.handler is null then
        raise exception 'queue % has no handler', quote_literal(queue)
            using errcode = '55000',
            hint = 'Set one with pgmq_jobs.configure_queue(queue, handler => ''schema.fn'').';
    end if;
    if max_jobs is null or max_jobs < 1 or max_jobs > 100000 then
        raise exception 'max_jobs must be between 1 and 100000, got %', coalesce(max_jobs::text, 'null')
            using errcode = '22023';
    end if;
    if max_seconds is null or not (max_seconds > 0 and max_seconds <= 3600) then
        raise exception 'max_seconds must be greater than 0 and at most 3600, got %',
            coalesce(max_seconds::text, 'null')
            using errcode = '22023';
    end if;
    deadline := started + make_interval(secs => max_seconds);
    loop
        got := 0;
        for job in
            select * from pgmq_jobs.claim(queue, least(10, max_jobs - (tally ->> 'claimed')::integer))
        loop
            got := got + 1;
            -- The handler as configured now (a job before may have changed it):
            -- checked before every job by _run_job, called by its identity.
            select qs.handler, qs.handler_oid into s.handler, s.handler_oid
            from pgmq_jobs.queue_settings as qs
            where qs.queue = process.queue;
            if wrapper is null or wrapper_for is distinct from s.handler_oid then
                perform pgmq_jobs._drop_handler_wrapper(wrapper);
                wrapper := pgmq_jobs._handler_wrapper(s.handler_oid);
                wrapper_for := s.handler_oid;
            end if;
            outcome := pgmq_jobs._run_job(queue, s.handler, s.handler_oid, wrapper, job);
            tally := tally
                || jsonb_build_object('claimed', (tally ->> 'claimed')::integer + 1)
                || jsonb_build_object(outcome, (tally ->> outcome)::integer + 1);
        end loop;
        exit when got = 0
            or (tally ->> 'claimed')::integer >= max_jobs
            or clock_timestamp() >= deadline;
    end loop;
    perform pgmq_jobs._drop_handler_wrapper(wrapper);
    return tally || jsonb_build_object(
        'queue', queue,
        'seconds', round(extract(epoch from clock_timestamp() - started)::numeric, 3)
    );
end
$$;

comment on function pgmq_jobs.process(text, integer, double precision) is
'Run up to max_jobs ready jobs of a queue through its SQL handler (configure_queue handler =>
schema.fn taking jsonb), stopping early when the queue is empty or max_seconds have passed.
Each job runs in its own subtransaction: success completes it; an error fails it with the
error text (retry with backoff, then dead letter); SQLSTATE PJ001 fails it permanently. One
transaction: its effects commit together. Returns counts of claimed, completed, retry, dead,
stale. Handlers run with the privileges of the pgmq_jobs owner (a SECURITY DEFINER handler:
its own owner''s). The handler is called by the identity it was bound to when configured,
never looked up by name again, and checked before every job: one dropped or re-created
since (or every one after a dump and restore) fails its jobs with an error saying to bind
it again with configure_queue.';
