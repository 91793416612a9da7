-- 020_private_lifecycle_run.sql: private helpers that run claimed jobs
-- through a queue's SQL handler and report their outcome.

-- A temporary SQL function pg_temp.<random name>(jsonb) that calls the
-- function handler_oid, and only that one: a SQL-standard body (begin atomic)
-- is resolved once, when it is created, and records a dependency on what it
-- calls. That dependency is checked here (the body must call handler_oid and
-- nothing else), so a name that now resolves to another function (an
-- anyelement overload in place of a dropped handler) never runs; and while the
-- wrapper exists the handler cannot be dropped but with cascade, which drops
-- the wrapper too. process() makes one per call and drops it when done.
-- Returns the wrapper's oid, or null when none calling handler_oid could be
-- made (each job's _check_bound_handler then says why).
create or replace function pgmq_jobs._handler_wrapper(handler_oid oid)
returns oid
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    target text;
    wrapper text := 'pgmq_jobs_handler_' || md5(random()::text || clock_timestamp()::text);
    w oid;
begin
    select format('%I.%I', n.nspname, p.proname) into target
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where p.oid = handler_oid;
    if target is null then
        return null;
    end if;
    begin
        execute format(
            'create function pg_temp.%I(payload pg_catalog.jsonb) returns void language sql'
            ' set search_path = pg_catalog, pg_temp begin atomic select %s(payload); end',
            wrapper, target
        );
    exception when others then
        return null;
    end;
    w := pg_catalog.to_regprocedure(format('pg_temp.%I(pg_catalog.jsonb)', wrapper));
    execute format('revoke all on function pg_temp.%I(pg_catalog.jsonb) from public', wrapper);
    if w is null or array(
        select d.refobjid from pg_catalog.pg_depend as d
        where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = w
            and d.refclassid = 'pg_catalog.pg_proc'::regclass
    ) <> array[handler_oid] then
        execute format('drop function if exists pg_temp.%I(pg_catalog.jsonb)', wrapper);
        return null;
    end if;
    return w;
end
$$;

-- Drop a wrapper made by _handler_wrapper, if it is still there.
create or replace function pgmq_jobs._drop_handler_wrapper(wrapper oid)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    wrapper_name text;
begin
    select p.proname into wrapper_name
    from pg_catalog.pg_proc as p
    where p.oid = wrapper and p.pronamespace = pg_catalog.pg_my_temp_schema();
    if wrapper_name is not null then
        execute format('drop function pg_temp.%I(pg_catalog.jsonb)', wrapper_name);
    end if;
end
$$;

-- Run job through the queue's handler in a subtransaction: its effects
-- commit with the completion, or roll back and the job fails with the error
-- text (and so retries with backoff, then dead-letters). First the handler is
-- checked to be still the function bound when it was configured
-- (handler_oid) and trusted (_check_bound_handler); then it is called through
-- wrapper (from _handler_wrapper for handler_oid), never by its name. SQLSTATE
-- PJ001 from the handler means a permanent failure. Returns the outcome:
-- completed, retry, dead or stale.
create or replace function pgmq_jobs._run_job(
    queue text, handler text, handler_oid oid, wrapper oid, job pgmq_jobs.claimed_job
)
returns text
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    wrapper_name text;
    state text;
    message text;
    detail text;
    hint text;
begin
    begin
        perform pgmq_jobs._check_bound_handler(queue, handler, handler_oid);
        select p.proname into wrapper_name
        from pg_catalog.pg_proc as p
        where p.oid = wrapper and p.pronamespace = pg_catalog.pg_my_temp_schema();
        if wrapper_name is null
            or pg_catalog.to_regprocedure(format('pg_temp.%I(pg_catalog.jsonb)', wrapper_name))
            is distinct from wrapper then
            raise exception 'handler % of queue % cannot be called by the identity it was configured with',
                quote_literal(handler), quote_literal(queue)
                using errcode = '42883',
                hint = 'Another function of its name may make a call with one jsonb ambiguous.';
        end if;
        execute format('select pg_temp.%I($1::pg_catalog.jsonb)', wrapper_name) using job.payload;
        return case
            when pgmq_jobs.complete(queue, array[job.job_id], array[job.attempt]) = 1 then 'completed'
            else 'stale'
        end;
    exception when others then
        get stacked diagnostics state = returned_sqlstate, message = message_text,
            detail = pg_exception_detail, hint = pg_exception_hint;
    end;
    return (
        select f.outcome
        from pgmq_jobs.fail(
            queue, job.job_id, job.attempt,
            format('%s (SQLSTATE %s)%s%s', message, state,
                case when detail <> '' then E'\n' || detail else '' end,
                case when hint <> '' then E'\n' || hint else '' end),
            permanent => state = 'PJ001'
        ) as f
    );
end
$$;
