-- 900_grants.sql: privileges. Nothing for PUBLIC (nor Supabase's anon and
-- authenticated roles); producer enqueues, worker runs jobs, admin does all.
--
-- The DO blocks are parsed under the installing session's search_path, so
-- every operator and function in them is schema-qualified (issue 18,
-- finding 2: oid = regnamespace and format(text, text) have no exact match in
-- pg_catalog, and overloads planted in public ran here as the installer).

revoke all on all functions in schema pgmq_jobs from public;
revoke all on all procedures in schema pgmq_jobs from public;
revoke all on all tables in schema pgmq_jobs from public;

do $revoke$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select from pg_catalog.pg_roles where rolname operator(pg_catalog.=) r) then
            execute pg_catalog.format('revoke all on all functions in schema pgmq_jobs from %I', r);
            execute pg_catalog.format('revoke all on all procedures in schema pgmq_jobs from %I', r);
            execute pg_catalog.format('revoke all on all tables in schema pgmq_jobs from %I', r);
            execute pg_catalog.format('revoke all on schema pgmq_jobs from %I', r);
        end if;
    end loop;
end
$revoke$;

grant execute on function
    pgmq_jobs.enqueue(text, jsonb, interval, timestamptz, integer, text, interval, text, integer, jsonb),
    pgmq_jobs.enqueue_batch(text, jsonb[], interval, integer, text[], interval, text[], integer[], jsonb),
    pgmq_jobs.schema_info()
to pgmq_jobs_producer;

grant execute on function
    pgmq_jobs.claim(text, integer, interval, text),
    pgmq_jobs.complete(text, bigint[], integer[], double precision[]),
    pgmq_jobs.fail(text, bigint, integer, text, interval, boolean),
    pgmq_jobs.fail_batch(text, bigint[], integer[], text[], interval[], boolean[]),
    pgmq_jobs.extend(text, bigint, integer, interval),
    pgmq_jobs.release(text, bigint[], integer[]),
    pgmq_jobs.heartbeat(text, text[], text, integer, bigint, bigint, integer, interval, boolean),
    pgmq_jobs.wait_for_jobs(text, text[], boolean),
    pgmq_jobs.schema_info(),
    pgmq_jobs.snooze(text, bigint, integer, interval),
    pgmq_jobs.job(text, bigint),
    pgmq_jobs.trace_contexts(text, bigint[])
to pgmq_jobs_worker;

-- The admin may call every public (non-underscore) function and read every view.
do $admin$
declare
    f pg_catalog.regprocedure;
begin
    for f in
        select p.oid::regprocedure
        from pg_catalog.pg_proc as p
        where p.pronamespace operator(pg_catalog.=) 'pgmq_jobs'::pg_catalog.regnamespace
            and p.proname operator(pg_catalog.!~) '^_'
    loop
        execute pg_catalog.format('grant execute on routine %s to pgmq_jobs_admin', f);
    end loop;
end
$admin$;

-- The schedules view reads pg_cron's jobs through this private helper.
grant execute on function pgmq_jobs._cron_job(text), pgmq_jobs._next_run_at(text) to pgmq_jobs_admin;
-- drain (a procedure: no SECURITY DEFINER possible) does its work through this step.
grant execute on function pgmq_jobs._drain_step(text, timestamptz, double precision) to pgmq_jobs_admin;

-- Roles allowed to enqueue through enqueue_as_user keep exactly that across
-- re-installs (the revokes above would otherwise undo allow_enqueue).
do $allowed$
declare
    r text;
begin
    for r in
        select distinct a.role_name from pgmq_jobs.enqueue_allowlist as a
        where pg_catalog.to_regrole(pg_catalog.quote_ident(a.role_name)) is not null
    loop
        execute pg_catalog.format('grant usage on schema pgmq_jobs to %I', r);
        execute pg_catalog.format('grant execute on function pgmq_jobs.enqueue_as_user(text, jsonb) to %I', r);
    end loop;
end
$allowed$;

grant select on
    pgmq_jobs.queues, pgmq_jobs.workers, pgmq_jobs.queue_history, pgmq_jobs.schedules,
    pgmq_jobs.audit
to pgmq_jobs_admin;
