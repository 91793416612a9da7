-- 030_private_cron.sql: private helpers for pg_cron: is it here, which
-- version, cron-expression validation, and idempotent job registration.
-- pg_cron is optional: every helper checks for it at call time.
--
-- The project reads, changes and removes only the pg_cron jobs it created:
-- their names start with pgmq_jobs_, and _cron_schedule, _cron_unschedule and
-- _cron_job refuse any other name. User-named jobs live under sub-prefixes
-- (pgmq_jobs_schedule_<name>, pgmq_jobs_invoke_<name>), so no user-given name
-- reaches the system jobs (pgmq_jobs_sweep, pgmq_jobs_partman,
-- pgmq_jobs_process_<queue>) either.

-- pg_cron is installed in this database (it lives in cron.database_name only).
create or replace function pgmq_jobs._cron_ready()
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select exists (select from pg_catalog.pg_extension where extname = 'pg_cron')
$$;

-- An error naming why pg_cron cannot be used here.
create or replace function pgmq_jobs._require_cron()
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    if not pgmq_jobs._cron_ready() then
        raise exception 'pg_cron is not installed in database %', quote_ident(current_database())
            using errcode = '55000',
            hint = format(
                'pg_cron runs in the database named by cron.database_name (here: %s); '
                'install pgmq_jobs there, or run pgmq-jobs sweep / the runner instead.',
                coalesce(current_setting('cron.database_name', true), 'pg_cron not loaded')
            );
    end if;
end
$$;

-- Check a cron expression before it reaches pg_cron, naming the bad field.
-- Accepts five fields (minute hour day-of-month month day-of-week) with *,
-- lists, ranges, steps and month/day names, the @hourly/@daily/@weekly/
-- @monthly/@yearly/@annually macros, and, with pg_cron 1.5 or later,
-- '<1-59> seconds'.
create or replace function pgmq_jobs._check_cron(expr text)
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    fields text[];
    names text[] := array['minute', 'hour', 'day of month', 'month', 'day of week'];
    lo integer[] := array[0, 0, 1, 1, 0];
    hi integer[] := array[59, 23, 31, 12, 7];
    months text[] := array['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
    days text[] := array['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
    version text := (select extversion from pg_catalog.pg_extension where extname = 'pg_cron');
    -- extversion may carry a packaging suffix ('1.4-1'): compare the numbers.
    seconds_ok boolean := version is null
        or string_to_array(substring(version from '^[0-9]+(?:\.[0-9]+)*'), '.')::integer[]
        >= array[1, 5];
    item text;
    m text[];
    a integer;
    b integer;
    i integer;
begin
    if expr is null or btrim(expr) = '' then
        raise exception 'cron expression must not be empty' using errcode = '22023';
    end if;
    if length(expr) > 200 then
        raise exception 'cron expression is too long (% characters)', length(expr)
            using errcode = '22023';
    end if;
    if lower(btrim(expr)) in ('@hourly', '@daily', '@midnight', '@weekly', '@monthly', '@yearly', '@annually') then
        return;
    end if;
    m := regexp_match(lower(btrim(expr)), '^(\d+)\s+seconds?$');
    if m is not null then
        if not seconds_ok then
            raise exception 'invalid cron expression %: sub-minute schedules need pg_cron 1.5 or later, this database has pg_cron %',
                quote_literal(expr), version
                using errcode = '22023';
        end if;
        if m[1]::numeric < 1 or m[1]::numeric > 59 then
            raise exception 'invalid cron expression %: seconds must be between 1 and 59',
                quote_literal(expr)
                using errcode = '22023';
        end if;
        return;
    end if;
    fields := regexp_split_to_array(btrim(expr), '\s+');
    if cardinality(fields) <> 5 then
        raise exception 'invalid cron expression %: expected 5 fields (minute hour day-of-month month day-of-week), got %',
            quote_literal(expr), cardinality(fields)
            using errcode = '22023',
            hint = case when version is not null and seconds_ok
                then 'pg_cron ' || version || ' also accepts ''N seconds''.'
                else 'pg_cron ' || coalesce(version, '(absent)') || ' schedules to the minute.' end;
    end if;
    for i in 1..5 loop
        foreach item in array string_to_array(lower(fields[i]), ',') loop
            m := regexp_match(item, '^(\*|[0-9a-z]+)(?:-([0-9a-z]+))?(?:/([0-9]+))?$');
            if m is null or (m[1] = '*' and m[2] is not null) then
                raise exception 'invalid cron expression %: bad % field %',
                    quote_literal(expr), names[i], quote_literal(fields[i])
                    using errcode = '22023';
            end if;
            if m[3] is not null and m[1] <> '*' and m[2] is null then
                raise exception 'invalid cron expression %: bad % field %: a step needs a range (e.g. 5-59/15 or */15)',
                    quote_literal(expr), names[i], quote_literal(fields[i])
                    using errcode = '22023';
            end if;
            if m[3] is not null and (m[3]::numeric < 1 or m[3]::numeric > hi[i]) then
                raise exception 'invalid cron expression %: step % out of range in % field',
                    quote_literal(expr), m[3], names[i]
                    using errcode = '22023';
            end if;
            if m[1] <> '*' then
                a := coalesce(
                    case when m[1] ~ '^\d+$' and length(m[1]) <= 4 then m[1]::integer end,
                    case when i = 4 then array_position(months, m[1]) end,
                    case when i = 5 then array_position(days, m[1]) - 1 end
                );
                b := coalesce(
                    case when m[2] ~ '^\d+$' and length(m[2]) <= 4 then m[2]::integer end,
                    case when i = 4 then array_position(months, m[2]) end,
                    case when i = 5 then array_position(days, m[2]) - 1 end,
                    case when m[2] is null then a end
                );
                if a is null or b is null then
                    raise exception 'invalid cron expression %: bad % field %: % is not a number or name',
                        quote_literal(expr), names[i], quote_literal(fields[i]),
                        quote_literal(case when a is null then m[1] else m[2] end)
                        using errcode = '22023';
                end if;
                if a < lo[i] or a > hi[i] or b < lo[i] or b > hi[i] then
                    raise exception 'invalid cron expression %: % field % is out of range %-%',
                        quote_literal(expr), names[i], quote_literal(item), lo[i], hi[i]
                        using errcode = '22023';
                end if;
                if a > b then
                    raise exception 'invalid cron expression %: % field range % runs backwards',
                        quote_literal(expr), names[i], quote_literal(item)
                        using errcode = '22023';
                end if;
            end if;
        end loop;
    end loop;
end
$$;

-- An error unless job_name is one of the project's own pg_cron job names
-- (pgmq_jobs_...): a foreign job is never read, changed or removed.
create or replace function pgmq_jobs._check_cron_job_name(job_name text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if job_name is null or not pg_catalog.starts_with(job_name, 'pgmq_jobs_') then
        raise exception 'pg_cron job % is not one of pgmq_jobs'' own (their names start with pgmq_jobs_)',
            coalesce(pg_catalog.quote_literal(pg_catalog.left(job_name, 80)), 'null')
            using errcode = '42501';
    end if;
end
$$;

-- The pg_cron job name of an invoker schedule (schedule_invoker, and
-- pgmq_jobs_plpy.schedule_invoke): pgmq_jobs_invoke_<name>, with name checked,
-- so a caller's name never reaches another job of the project or a foreign one.
create or replace function pgmq_jobs._invoke_job_name(name text)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    -- pg_cron job names are of type name (63 bytes); the prefix takes 17.
    if name is null or name !~ '^[a-z0-9][a-z0-9_.-]{0,45}$' then
        raise exception 'invalid invoke schedule name %: use 1 to 46 lowercase letters, digits, _ . - (the pg_cron job is named pgmq_jobs_invoke_<name>)',
            coalesce(pg_catalog.quote_literal(pg_catalog.left(name, 80)), 'null')
            using errcode = '22023';
    end if;
    return 'pgmq_jobs_invoke_' || name;
end
$$;

-- Create or update one of the project's pg_cron jobs (pg_cron upserts by name).
create or replace function pgmq_jobs._cron_schedule(job_name text, expr text, command text)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._check_cron_job_name(job_name);
    perform pgmq_jobs._require_cron();
    return cron.schedule(job_name, expr, command);
end
$$;

-- Remove one of the project's pg_cron jobs if it exists; true when one was removed.
create or replace function pgmq_jobs._cron_unschedule(job_name text)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._check_cron_job_name(job_name);
    if not pgmq_jobs._cron_ready() then
        return false;
    end if;
    if not exists (select from cron.job as j where j.jobname = job_name) then
        return false;
    end if;
    return cron.unschedule(job_name);
end
$$;

-- One of the project's pg_cron jobs with its last run, or nulls without
-- pg_cron; an error for any other name. Security definer: pg_cron shows a
-- role only its own jobs, and the schedules view that calls this must show
-- the owner's (granted to admin). The command of an invoker job is not shown:
-- schedule_invoker writes the invoker's secret into it.
create or replace function pgmq_jobs._cron_job(job_name text)
returns table (
    jobid bigint, schedule text, command text, active boolean,
    last_run_at timestamptz, last_status text, last_message text
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._check_cron_job_name(job_name);
    if not pgmq_jobs._cron_ready() then
        return;
    end if;
    return query
    select
        j.jobid, j.schedule,
        case when not pg_catalog.starts_with(j.jobname, 'pgmq_jobs_invoke_') then j.command end,
        j.active, r.start_time, r.status, r.return_message
    from cron.job as j
    left join lateral (
        select d.start_time, d.status, d.return_message
        from cron.job_run_details as d
        where d.jobid = j.jobid
        order by d.runid desc
        limit 1
    ) as r on true
    where j.jobname = job_name;
end
$$;

-- Keep the pg_cron job that drives a queue's SQL handler in line with its
-- settings: one job per handled queue, every minute, draining for 55 s (the
-- DO block of _drain_command, which pins its own session's search_path).
create or replace function pgmq_jobs._sync_handler_job(queue text)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    handled boolean := exists (
        select from pgmq_jobs.queue_settings as qs
        where qs.queue = _sync_handler_job.queue and qs.handler is not null
    );
begin
    if handled and pgmq_jobs._cron_ready() then
        perform pgmq_jobs._cron_schedule(
            'pgmq_jobs_process_' || queue, '* * * * *',
            pgmq_jobs._drain_command(queue, 55)
        );
    elsif handled then
        raise notice 'pg_cron is not installed here: run select pgmq_jobs.process(%) periodically to run the handler of queue %',
            quote_literal(queue), queue;
    else
        perform pgmq_jobs._cron_unschedule('pgmq_jobs_process_' || queue);
    end if;
end
$$;

-- pg_partman's maintenance (new partitions ahead, retention behind) runs from
-- pg_cron as job pgmq_jobs_partman while any partitioned queue exists.
-- The schema pg_partman is installed in (partman on Debian, extensions on
-- Supabase); null without it.
create or replace function pgmq_jobs._partman_schema()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select n.nspname::text from pg_catalog.pg_extension as e
    join pg_catalog.pg_namespace as n on n.oid = e.extnamespace
    where e.extname = 'pg_partman'
$$;

-- pg_partman's maintenance of the partitioned queues' tables, as the
-- pgmq_jobs_partman job runs it; returns how many partition sets failed.
-- pg_cron runs a command under the default search_path ("$user", public), and
-- pg_partman's functions pin none: an object planted in public with an exact
-- signature, format(text, text) say, would beat pg_catalog's variadic one and
-- run as the job's owner. Called from here, partman runs under this
-- function's path. One partition set that fails (say, rows in its default
-- partition that a new partition would cover) is reported and the others go on.
create or replace function pgmq_jobs._partman_maintenance()
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    partman text := pgmq_jobs._partman_schema();
    parents text[];
    parent text;
    failed integer := 0;
begin
    if partman is null then
        return 0;
    end if;
    execute format(
        'select array_agg(c.parent_table order by c.parent_table) from %I.part_config as c'
        ' where c.parent_table = any($1)',
        partman
    ) into parents using array(
        select t.parent
        from pgmq_jobs.queue_settings as s
        cross join lateral (values ('pgmq.q_' || s.queue), ('pgmq.a_' || s.queue)) as t (parent)
        where s.partitioned
    );
    foreach parent in array coalesce(parents, '{}') loop
        begin
            execute format('select %I.run_maintenance(p_parent_table => $1)', partman) using parent;
        exception when others then
            failed := failed + 1;
            raise warning 'pg_partman maintenance of % failed: %', parent, sqlerrm;
        end;
    end loop;
    return failed;
end
$$;

create or replace function pgmq_jobs._sync_partman_job()
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    partman text := pgmq_jobs._partman_schema();
begin
    if partman is not null and pgmq_jobs._cron_ready()
        and exists (select from pgmq_jobs.queue_settings as qs where qs.partitioned) then
        perform pgmq_jobs._cron_schedule(
            'pgmq_jobs_partman', '*/5 * * * *', 'select pgmq_jobs._partman_maintenance()'
        );
    elsif not exists (select from pgmq_jobs.queue_settings as qs where qs.partitioned) then
        perform pgmq_jobs._cron_unschedule('pgmq_jobs_partman');
    end if;
end
$$;

-- The next time a cron expression fires after now, where PL/Python support is
-- installed (pgmq_jobs_plpy.cron_next_runs); null elsewhere.
create or replace function pgmq_jobs._next_run_at(expr text)
returns timestamptz
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    next_at timestamptz;
begin
    if pg_catalog.to_regprocedure('pgmq_jobs_plpy.cron_next_runs(text,integer,timestamp with time zone)') is null then
        return null;
    end if;
    execute 'select min(t) from pgmq_jobs_plpy.cron_next_runs($1, 1, clock_timestamp()) as t'
        into next_at using expr;
    return next_at;
end
$$;
