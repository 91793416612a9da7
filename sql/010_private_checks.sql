-- 010_private_checks.sql: private validation helpers shared by the public
-- functions. Each raises a clear error that names the problem.

-- Queue names: lowercase [a-z][a-z0-9_]*, at most 43 characters so that the
-- dead-letter queue "<queue>_dlq" fits PGMQ's 47-character limit. Names are
-- never rewritten (no lower-casing, no trimming): anything else is refused.
create or replace function pgmq_jobs._check_queue_name(queue text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if queue is null then
        raise exception 'queue name must not be null'
            using errcode = '22004';
    end if;
    if queue = '' then
        raise exception 'queue name must not be empty'
            using errcode = '22023';
    end if;
    if length(queue) > 43 then
        raise exception 'queue name %... is too long: % characters, at most 43 allowed',
            quote_literal(left(queue, 50)), length(queue)
            using errcode = '22023',
            hint = 'The dead-letter queue <queue>_dlq must fit PGMQ''s 47-character limit.';
    end if;
    if queue !~ '^[a-z][a-z0-9_]*$' then
        raise exception 'invalid queue name %: use lowercase letters, digits and underscores, starting with a letter',
            quote_literal(queue)
            using errcode = '22023';
    end if;
    if queue ~ '_dlq$' then
        raise exception 'invalid queue name %: names ending in _dlq are reserved for dead-letter queues',
            quote_literal(queue)
            using errcode = '22023';
    end if;
end
$$;

-- The settings of an existing queue, or an error naming the unknown queue.
create or replace function pgmq_jobs._settings(queue text)
returns pgmq_jobs.queue_settings
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings;
begin
    select * into s from pgmq_jobs.queue_settings as qs where qs.queue = _settings.queue;
    if not found then
        perform pgmq_jobs._check_queue_name(queue);
        raise exception 'unknown queue %', quote_literal(queue)
            using errcode = '42704',
            hint = 'Create it first with pgmq_jobs.create_queue.';
    end if;
    return s;
end
$$;

-- An interval argument within [lo, hi] (lo exclusive when lo_open).
create or replace function pgmq_jobs._check_interval(
    name text, val interval, lo interval, hi interval, lo_open boolean default false
)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if val is null then
        raise exception '% must not be null', name using errcode = '22004';
    end if;
    if (lo_open and val <= lo) or (not lo_open and val < lo) then
        raise exception '% must be % %, got %', name,
            case when lo_open then 'greater than' else 'at least' end, lo, val
            using errcode = '22023';
    end if;
    if val > hi then
        raise exception '% must be at most %, got %', name, hi, val
            using errcode = '22023';
    end if;
end
$$;

-- Every setting of a queue within its documented range.
create or replace function pgmq_jobs._check_settings(s pgmq_jobs.queue_settings)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if s.max_attempts is null or s.max_attempts < 1 or s.max_attempts > 1000 then
        raise exception 'max_attempts must be between 1 and 1000, got %',
            coalesce(s.max_attempts::text, 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_interval(
        'visibility_timeout', s.visibility_timeout, interval '0', interval '1 day', true
    );
    perform pgmq_jobs._check_interval(
        'retry_base', s.retry_base, interval '0', interval '1 day', true
    );
    perform pgmq_jobs._check_interval(
        'retry_max', s.retry_max, interval '0', interval '30 days', true
    );
    if s.retry_max < s.retry_base then
        raise exception 'retry_max (%) must be at least retry_base (%)', s.retry_max, s.retry_base
            using errcode = '22023';
    end if;
    if s.retry_factor is null or s.retry_factor < 1 or s.retry_factor > 100
        or s.retry_factor = 'NaN'::double precision then
        raise exception 'retry_factor must be between 1 and 100, got %',
            coalesce(s.retry_factor::text, 'null')
            using errcode = '22023';
    end if;
    if s.jitter is null or s.jitter not in ('none', 'full', 'equal') then
        raise exception 'jitter must be one of none, full, equal; got %',
            coalesce(quote_literal(s.jitter), 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_interval(
        'keep_completed', s.keep_completed, interval '0', interval '3650 days'
    );
    -- The handler is checked and bound by pgmq_jobs._handler_oid when it is
    -- given (create_queue, configure_queue), and before every job it runs.
    if s.concurrency is not null and (s.concurrency < 0 or s.concurrency > 100000) then
        raise exception 'concurrency must be between 0 and 100000 (or null for no limit), got %',
            s.concurrency
            using errcode = '22023';
    end if;
    if s.dead_letter_retention is not null then
        perform pgmq_jobs._check_interval(
            'dead_letter_retention', s.dead_letter_retention, interval '0', interval '3650 days'
        );
    end if;
    if s.payload_schema is not null then
        if jsonb_typeof(s.payload_schema) <> 'object' then
            raise exception 'payload_schema must be a JSON Schema object, got %', jsonb_typeof(s.payload_schema)
                using errcode = '22023';
        end if;
        -- A schema refers to nothing outside itself: no file or network $ref.
        perform pgmq_jobs._check_schema_refs(s.payload_schema);
        if pgmq_jobs._schema_validator() is null then
            raise exception 'cannot set a payload_schema: no JSON Schema validator is installed'
                using errcode = '55000',
                hint = 'Install PL/Python support (pgmq-jobs install --with-plpython) or pg_jsonschema.';
        end if;
        -- An invalid schema is refused now, not at every later enqueue.
        if pgmq_jobs._schema_validator() = 'plpython' then
            execute 'select pgmq_jobs_plpy.validate_json_schema($1, ''{}''::jsonb)' using s.payload_schema;
        end if;
    end if;
    if s.max_payload_bytes is null or s.max_payload_bytes < 2
        or s.max_payload_bytes > 67108864 then
        raise exception 'max_payload_bytes must be between 2 and 67108864 (64 MiB), got %',
            coalesce(s.max_payload_bytes::text, 'null')
            using errcode = '22023';
    end if;
end
$$;

-- A job payload: a JSON object no larger than the queue's limit (as text).
create or replace function pgmq_jobs._check_payload(
    payload jsonb, max_bytes integer, what text default 'payload'
)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    size integer;
begin
    if payload is null then
        raise exception '% must be a JSON object, got null', what using errcode = '22004';
    end if;
    if jsonb_typeof(payload) <> 'object' then
        raise exception '% must be a JSON object, got %', what, jsonb_typeof(payload)
            using errcode = '22023';
    end if;
    size := octet_length(payload::text);
    if size > max_bytes then
        raise exception '% is % bytes, over the queue''s limit of % bytes', what, size, max_bytes
            using errcode = '54000';
    end if;
end
$$;

-- Raise when job_id was never issued by the queue; a job that was issued and
-- has since finished or moved on is a stale reference, not an error.
create or replace function pgmq_jobs._check_job_issued(queue text, job_id bigint)
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    seq text := pg_catalog.pg_get_serial_sequence(format('pgmq.%I', 'q_' || queue), 'msg_id');
    last_id bigint;
begin
    if seq is null then
        return;
    end if;
    execute format('select case when is_called then last_value else 0 end from %s', seq)
        into last_id;
    if job_id > last_id then
        raise exception 'job % does not exist in queue %', job_id, quote_literal(queue)
            using errcode = '22023';
    end if;
end
$$;

-- The common argument checks of complete/fail/extend.
create or replace function pgmq_jobs._check_delivery(job_id bigint, attempt integer)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if job_id is null then
        raise exception 'job_id must not be null' using errcode = '22004';
    end if;
    if job_id < 1 then
        raise exception 'job_id must be positive, got %', job_id using errcode = '22023';
    end if;
    if attempt is null then
        raise exception 'attempt must not be null' using errcode = '22004';
    end if;
    if attempt < 1 then
        raise exception 'attempt must be at least 1, got %', attempt using errcode = '22023';
    end if;
end
$$;

-- The parallel arrays of deliveries given to complete and release.
create or replace function pgmq_jobs._check_deliveries(job_ids bigint[], attempts integer[])
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if job_ids is null or attempts is null then
        raise exception 'job_ids and attempts must not be null' using errcode = '22004';
    end if;
    if cardinality(job_ids) <> cardinality(attempts) then
        raise exception 'job_ids and attempts must have the same length, got % and %',
            cardinality(job_ids), cardinality(attempts)
            using errcode = '22023';
    end if;
    if array_position(job_ids, null) is not null or array_position(attempts, null) is not null then
        raise exception 'job_ids and attempts must not contain nulls' using errcode = '22004';
    end if;
end
$$;

-- Which JSON Schema validator this database has, if any: the PL/Python one
-- that `pgmq-jobs install --with-plpython` adds (schema pgmq_jobs_plpy), or
-- the pg_jsonschema extension (Supabase). Null when there is none.
create or replace function pgmq_jobs._schema_validator()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select case
        when pg_catalog.to_regprocedure('pgmq_jobs_plpy.validate_json_schema(jsonb,jsonb)') is not null
            then 'plpython'
        when exists (select from pg_catalog.pg_extension where extname = 'pg_jsonschema')
            then 'pg_jsonschema'
    end
$$;

-- A payload against its queue's JSON Schema: an error listing every
-- violation by path, or nothing.
create or replace function pgmq_jobs._check_payload_schema(schema jsonb, payload jsonb, what text default 'payload')
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    validator text := pgmq_jobs._schema_validator();
    violations text[];
    ok boolean;
begin
    if validator = 'plpython' then
        execute 'select pgmq_jobs_plpy.validate_json_schema($1, $2)' into violations using schema, payload;
    elsif validator = 'pg_jsonschema' then
        execute 'select jsonb_matches_schema($1::json, $2)' into ok using schema, payload;
        if not ok then
            violations := array['the payload does not match the queue''s JSON Schema (pg_jsonschema gives no details)'];
        end if;
    else
        raise exception 'this queue has a payload_schema but no JSON Schema validator is installed'
            using errcode = '55000',
            hint = 'Install PL/Python support (pgmq-jobs install --with-plpython) or pg_jsonschema.';
    end if;
    if cardinality(violations) > 0 then
        raise exception '% violates the queue''s schema: %', what, array_to_string(violations, '; ')
            using errcode = '22023',
            detail = array_to_string(violations, E'\n');
    end if;
end
$$;


-- Handlers run inside process(), which is SECURITY DEFINER: a handler must
-- not let whoever configures a queue run code as this schema's owner. The
-- function fn may be a queue's handler when it is a plain function taking
-- exactly one jsonb, not a temporary one (it would go with its session), and
-- either owned by the owner of schema pgmq_jobs or SECURITY DEFINER (it then
-- runs as its own owner). Checked when configured and before every job;
-- handler names it in the errors.
create or replace function pgmq_jobs._check_handler_proc(fn oid, handler text)
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    p record;
begin
    select
        pr.prokind, pr.pronargs, pr.proargtypes, pr.prosecdef, pr.proowner,
        pr.pronamespace
    into p
    from pg_catalog.pg_proc as pr
    where pr.oid = fn;
    if not found then
        raise exception 'handler % does not exist', quote_literal(handler)
            using errcode = '42883';
    end if;
    if p.prokind <> 'f' or p.pronargs <> 1
        or p.proargtypes[0] <> 'pg_catalog.jsonb'::pg_catalog.regtype::oid then
        raise exception 'handler % must be a function taking one jsonb', quote_literal(handler)
            using errcode = '42883';
    end if;
    if p.pronamespace = pg_catalog.pg_my_temp_schema()
        or pg_catalog.pg_is_other_temp_schema(p.pronamespace) then
        raise exception 'handler % is a temporary function: a handler must outlive its session',
            quote_literal(handler)
            using errcode = '42501';
    end if;
    if not p.prosecdef and p.proowner <> (
        select n.nspowner from pg_catalog.pg_namespace as n where n.nspname = 'pgmq_jobs'
    ) then
        raise exception 'handler % must be owned by the owner of schema pgmq_jobs or be SECURITY DEFINER',
            quote_literal(handler)
            using errcode = '42501',
            hint = 'process() runs handlers with the privileges of the pgmq_jobs owner; a SECURITY DEFINER handler runs as its own owner instead.';
    end if;
end
$$;

-- The identity (pg_proc oid) of the handler given to create_queue or
-- configure_queue as 'schema.fn' or 'schema.fn(jsonb)': resolved once, here,
-- and called by that identity from then on. The configuring role (actor, as
-- pgmq_jobs._actor() names it) must itself hold EXECUTE on the function:
-- naming a function as a handler is no way around its grants.
create or replace function pgmq_jobs._handler_oid(handler text, actor text)
returns oid
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    fn oid;
begin
    if handler is null or handler !~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*(\(jsonb\))?$' then
        raise exception 'handler % must be a schema-qualified lowercase name like app.fn',
            coalesce(quote_literal(handler), 'null')
            using errcode = '22023';
    end if;
    fn := pg_catalog.to_regprocedure(regexp_replace(handler, '\(jsonb\)$', '') || '(jsonb)');
    if fn is null then
        raise exception 'handler % is not a function taking (payload jsonb)', quote_literal(handler)
            using errcode = '42883',
            hint = 'Name it schema-qualified, e.g. app.send_email for app.send_email(jsonb).';
    end if;
    perform pgmq_jobs._check_handler_proc(fn, handler);
    if not pg_catalog.has_function_privilege(actor::name, fn, 'execute') then
        raise exception 'role % may not execute %, so it cannot make it a queue''s handler',
            quote_ident(actor), fn::regprocedure
            using errcode = '42501',
            hint = 'Its owner can grant execute on the function to that role first.';
    end if;
    return fn;
end
$$;

-- The canonical name of the handler fn, as the handler column holds it:
-- 'schema.fn(jsonb)', always schema-qualified.
create or replace function pgmq_jobs._handler_name(fn oid)
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select format('%I.%I(jsonb)', n.nspname, p.proname)
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where p.oid = fn
$$;

-- Before every job process() runs: the queue's handler is still the function
-- bound when it was configured (handler names it, handler_oid is its
-- identity) and still one a queue may run. A handler that was dropped,
-- re-created or replaced by another function of its name fails the job, and
-- so does every handler after a dump and restore (the restored function has
-- a new identity): an admin binds it again with configure_queue.
create or replace function pgmq_jobs._check_bound_handler(queue text, handler text, handler_oid oid)
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    bound boolean := false;
begin
    if handler is null then
        raise exception 'queue % has no handler', quote_literal(queue)
            using errcode = '55000',
            hint = 'Set one with pgmq_jobs.configure_queue(queue, handler => ''schema.fn'').';
    end if;
    -- (to_regprocedure raises on a malformed name: only a canonical one gets there.)
    if handler_oid is not null and handler ~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\(jsonb\)$' then
        bound := pg_catalog.to_regprocedure(handler) is not distinct from handler_oid;
    end if;
    if not bound then
        raise exception 'handler % of queue % is not the function it was configured with: it was dropped or re-created since, or the database was restored from a dump',
            quote_literal(handler), quote_literal(queue)
            using errcode = '42883',
            hint = format(
                'Check the function, then bind it again: select pgmq_jobs.configure_queue(%L, handler => %L);',
                queue, handler
            );
    end if;
    perform pgmq_jobs._check_handler_proc(handler_oid, handler);
end
$$;

-- What the audit row of a handler change records about the EXECUTE check
-- that _handler_oid made: the role it checked and the outcome.
create or replace function pgmq_jobs._handler_check_record(fn oid)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    actor text := pgmq_jobs._actor();
begin
    if fn is null then
        return '{}';
    end if;
    return jsonb_build_object('handler_check', jsonb_build_object(
        'role', actor,
        'execute', has_function_privilege(actor::name, fn, 'execute'),
        'function', pgmq_jobs._handler_name(fn)
    ));
end
$$;

-- A job priority: -32768..32767 (a smallint, as claim orders by it).
create or replace function pgmq_jobs._check_priority(priority integer, what text default 'priority')
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if priority is null or priority not between -32768 and 32767 then
        raise exception '% must be an integer between -32768 and 32767, got %',
            what, coalesce(priority::text, 'null')
            using errcode = '22023';
    end if;
end
$$;
