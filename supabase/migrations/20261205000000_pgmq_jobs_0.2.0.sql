-- pgmq-jobs 0.2.0: the upgrade from 0.1.0, then the whole current schema.
-- GENERATED from sql/upgrades/ and sql/ by `python -m pgmq_jobs.ops.migrations`
-- (make migrations): do not edit. Released migrations are never edited either:
-- each release adds one file.
--
-- Everything below runs under search_path = pg_catalog, pg_temp, so an object
-- planted in a schema of the session's path never runs here.
set search_path = pg_catalog, pg_temp;

-- PGMQ must be present (an existing pgmq schema is used as it is); pg_cron is
-- created only where it may live. A database of a newer release is refused.
do $pgmq_jobs_prologue$
declare
    installed text;
begin
    if not exists (select from pg_catalog.pg_namespace where nspname = 'pgmq') then
        if exists (select from pg_catalog.pg_available_extensions where name = 'pgmq') then
            create extension if not exists pgmq;
        else
            raise exception 'PGMQ is not installed in this database: enable the pgmq extension (Supabase: Database -> Extensions -> pgmq, or `create extension pgmq`) or run `pgmq-jobs install --dsn <database url>`';
        end if;
    end if;
    if exists (select from pg_catalog.pg_available_extensions where name = 'pg_cron')
        and current_database() operator(pg_catalog.=)
            pg_catalog.current_setting('cron.database_name', true) then
        create extension if not exists pg_cron;
    end if;
    if pg_catalog.to_regclass('pgmq_jobs.schema_version') is not null then
        select v.version into installed
        from pgmq_jobs.schema_version as v
        order by pg_catalog.string_to_array(v.version, '.')::integer [] desc
        limit 1;
        if pg_catalog.string_to_array(installed, '.')::integer []
            operator(pg_catalog.>) pg_catalog.string_to_array('0.2.0', '.')::integer [] then
            raise exception 'the database has pgmq-jobs %, newer than this migration''s 0.2.0: '
                'nothing was changed', installed;
        end if;
    end if;
end
$pgmq_jobs_prologue$;

-- ======================================================================
-- sql/upgrades/0.1.0--0.2.0.sql
-- ======================================================================
-- 0.1.0--0.2.0.sql: the upgrade step from release 0.1.0 to 0.2.0.
--
-- Runs once, on a database whose newest pgmq_jobs.schema_version is 0.1.0,
-- inside the install transaction and under its lock, with search_path set to
-- pg_catalog, pg_temp; the current sql/ files are re-applied right after it.
-- It holds only what re-applying sql/ cannot do by itself: new columns of
-- existing tables, drops of functions whose signature changed, changes to
-- the tables, indexes and grants of queues created before the upgrade, and
-- data moves. Every statement is written so that running the step twice
-- changes nothing the second time.
--
-- Columns are added at the end of their table, and sql/000_schema.sql
-- declares them last too, so an upgraded table equals a fresh one.

-- Issue 18, finding 9: audit rows record session_user beside the acting role.
alter table pgmq_jobs.audit_log add column if not exists session_role text;

-- Issue 18, findings 1 and 3: a queue's handler is bound by identity. The
-- handler column now holds 'schema.fn(jsonb)' and handler_oid the function's
-- oid; the checks moved out of _check_handler_trusted and _run_job takes the
-- binding.
alter table pgmq_jobs.queue_settings add column if not exists handler_oid oid;
drop function if exists pgmq_jobs._check_handler_trusted(text);
drop function if exists pgmq_jobs._run_job(text, text, pgmq_jobs.claimed_job);
-- Existing handlers are bound to the function their name gives now (each
-- binding audited); one that is gone stays unbound, and its jobs fail with an
-- error saying to configure the handler again. (0.1.0 held 'schema.fn'.
-- Plain operators: the step runs under search_path pg_catalog, pg_temp.)
with found as (
    select
        qs.queue,
        case
            when qs.handler ~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$'
                then pg_catalog.to_regprocedure(qs.handler || '(jsonb)')
        end as fn
    from pgmq_jobs.queue_settings as qs
    where qs.handler_oid is null and qs.handler is not null
),

bound as (
    update pgmq_jobs.queue_settings as qs
    set handler_oid = p.oid,
        handler = pg_catalog.format('%I.%I(jsonb)', n.nspname, p.proname)
    from found as f
    inner join pg_catalog.pg_proc as p on p.oid = f.fn
    inner join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where qs.queue = f.queue
    returning qs.queue, qs.handler
)

insert into pgmq_jobs.audit_log (actor, queue, action, change, session_role)
select
    current_user,
    b.queue,
    'bind_handler',
    pg_catalog.jsonb_build_object('handler', b.handler, 'by', 'upgrade from 0.1.0 to 0.2.0'),
    session_user
from bound as b;
update pgmq_jobs.queue_settings as qs
set handler = qs.handler || '(jsonb)'
where qs.handler_oid is null
    and qs.handler ~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$';

-- Issue 18, finding 2: a CHECK constraint is bound when it is created, under
-- that session's search_path; 0.1.0's threshold >= 0 (float8 >= int4, no
-- exact match in pg_catalog) could have bound an operator planted in public.
-- Re-create both checks of alert_thresholds with qualified operators, as
-- sql/302_alert_thresholds.sql declares them (the views are re-created by
-- re-applying sql/).
alter table pgmq_jobs.alert_thresholds drop constraint if exists alert_thresholds_alert_check;
alter table pgmq_jobs.alert_thresholds add constraint alert_thresholds_alert_check check (
    alert operator(pg_catalog.=) any( -- noqa: LT01
        array[
            'queue_depth', 'dead_letters', 'low_throughput', 'stalled_workers', 'oldest_job_age',
            'xmin_horizon', 'table_bloat', 'wraparound'
        ]
    )
);
alter table pgmq_jobs.alert_thresholds drop constraint if exists alert_thresholds_threshold_check;
alter table pgmq_jobs.alert_thresholds add constraint alert_thresholds_threshold_check
check (threshold operator(pg_catalog.>=) 0::double precision); -- noqa: LT01

-- Issue 18, finding 7 (pg_monitor no longer reads payloads) and issue 21
-- (the priority index): the tables of queues created before 0.2.0 get their
-- privileges and indexes from sql/890_queue_tables.sql, which runs after
-- this step, for every queue, as create_queue does for a new one.

-- Issue 18, finding 10: Supabase's security advisor reports every routine
-- without a pinned search_path, and an aggregate cannot have one: the sweep
-- now sums its histograms with the function pgmq_jobs._sum_buckets(jsonb).
drop aggregate if exists pgmq_jobs._sum_buckets(bigint[]);

-- Issue 21, priorities: claim walks a queue's (priority, vt) index once it is
-- built. For the queues of 0.1.0, pgmq-jobs install builds it concurrently
-- after this transaction (a plain build would block claims for as long as it
-- takes on a deep queue); the Supabase migration builds it in its own
-- transaction (sql/890_queue_tables.sql).
alter table pgmq_jobs.queue_settings add column if not exists priority_index boolean not null default false;
alter table pgmq_jobs.queue_settings add column if not exists prioritized boolean not null default false;

-- Issue 21, priorities: enqueue and enqueue_batch gained a last argument
-- (priority, priorities). Calls written for 0.1.0 keep working: the new
-- argument has a default, so every 0.1.0 call (positional or named) resolves
-- to the new signature.
drop function if exists pgmq_jobs.enqueue(text, jsonb, interval, timestamptz, integer, text, interval, text);
drop function if exists pgmq_jobs.enqueue_batch(text, jsonb[], interval, integer, text[], interval, text[]);

-- Issue 20, item 7: queue_stats.enqueued_total (and the exporter's
-- pgmq_jobs_jobs_enqueued_total) count committed enqueues only, from the
-- outcome log that enqueue appends to in the caller's transaction, folded per
-- minute into queue_history (and into the new table queue_totals). The
-- msg_id sequence they read before counted rolled-back enqueues too. Queues
-- of 0.1.0 count from the upgrade on.
alter table pgmq_jobs.outcome_log add column if not exists enqueued integer not null default 0;
alter table pgmq_jobs.queue_history add column if not exists enqueued bigint not null default 0;

-- Issue 20: replay gained strict (refuse ids that are not dead letters, for
-- the CLI); 0.1.0 calls resolve to the new signature and ignore such ids, as
-- before.
drop function if exists pgmq_jobs.replay(text, bigint[]);

-- Issue 20, item 8: dead_letters gained newest_first (the dashboard lists the
-- newest dead letters first); 0.1.0 calls resolve to the new signature and
-- list the oldest first, as before.
drop function if exists pgmq_jobs.dead_letters(text, integer, bigint, text, interval, interval);

-- ======================================================================
-- sql/000_schema.sql
-- ======================================================================
-- 000_schema.sql: the pgmq_jobs schema, its roles, its private tables and
-- composite result types. Idempotent: every statement can run again.

create schema if not exists pgmq_jobs;
comment on schema pgmq_jobs is
'pgmq-jobs: retries with backoff, dead letters and replay over PGMQ queues';

-- Least-privilege roles. Members are granted by the operator:
--   grant pgmq_jobs_producer to app_user;
do $roles$
begin
    if not exists (select from pg_catalog.pg_roles where rolname operator(pg_catalog.=) 'pgmq_jobs_producer') then
        create role pgmq_jobs_producer nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname operator(pg_catalog.=) 'pgmq_jobs_worker') then
        create role pgmq_jobs_worker nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname operator(pg_catalog.=) 'pgmq_jobs_admin') then
        create role pgmq_jobs_admin nologin;
    end if;
end
$roles$;

revoke all on schema pgmq_jobs from public;
grant usage on schema pgmq_jobs to pgmq_jobs_producer, pgmq_jobs_worker, pgmq_jobs_admin;

-- Functions created later in this schema are not executable by PUBLIC.
alter default privileges in schema pgmq_jobs revoke execute on functions from public;

-- One row per queue: its retry policy and limits. Read once per call by
-- primary key; never updated on the job path.
create table if not exists pgmq_jobs.queue_settings (
    queue text primary key,
    max_attempts integer not null default 5,
    visibility_timeout interval not null default interval '30 seconds',
    retry_base interval not null default interval '1 second',
    retry_max interval not null default interval '5 minutes',
    retry_factor double precision not null default 2,
    jitter text not null default 'full',
    keep_completed interval not null default interval '7 days',
    max_payload_bytes integer not null default 1048576,
    unlogged boolean not null default false,
    notify boolean not null default true,
    handler text,
    dead_letter_retention interval,
    concurrency integer,
    partitioned boolean not null default false,
    partition_interval text,
    retention_interval text,
    payload_schema jsonb,
    created_at timestamptz not null default pg_catalog.now(),
    updated_at timestamptz not null default pg_catalog.now(),
    -- The handler's identity (its pg_proc oid) when it was configured: process()
    -- calls that function and no other. A plain oid, not regprocedure (reg*
    -- columns in user tables block pg_upgrade).
    handler_oid oid,
    -- The queue's (priority, vt) index is built and valid: claim walks it.
    -- Until then (an upgrade builds it concurrently, after its transaction)
    -- claim walks the vt index, oldest visible first, ignoring priorities.
    priority_index boolean not null default false,
    -- A job of another priority than 0 was ever enqueued (or replayed) here:
    -- claim walks the priorities only then. Set once, by the producer that
    -- first gives one, and never unset (no row updated on the job path).
    prioritized boolean not null default false,
    constraint queue_settings_jitter_check check (
        jitter operator(pg_catalog.=) any(array['none', 'full', 'equal']) -- noqa: LT01
    )
);
comment on table pgmq_jobs.queue_settings is
'Per-queue settings of pgmq-jobs; change them with pgmq_jobs.configure_queue';

-- Append-only outcome counts: complete/fail/claim add one row per call (not
-- per job, and never an update), the sweep folds them into queue_history.
-- Logged (not unlogged): a hot standby must be able to read it for stats.
create table if not exists pgmq_jobs.outcome_log (
    queue text not null,
    at timestamptz not null default pg_catalog.clock_timestamp(),
    completed integer not null default 0,
    retried integer not null default 0,
    dead integer not null default 0,
    expired integer not null default 0,
    duration_count integer not null default 0,
    duration_ms_sum double precision not null default 0,
    duration_buckets integer[],
    -- Jobs enqueued (enqueue, enqueue_batch) by the transaction that wrote the
    -- row: rolled back with it, so only committed jobs are ever counted.
    enqueued integer not null default 0
);
create index if not exists outcome_log_at_idx on pgmq_jobs.outcome_log (at);
comment on table pgmq_jobs.outcome_log is
'Recent job outcomes, appended per call and folded into queue_history by sweep()';

-- One row per queue and minute: outcome counts folded from outcome_log and
-- the queue's gauges at the sweep that recorded it.
create table if not exists pgmq_jobs.queue_history (
    queue text not null,
    minute timestamptz not null,
    completed bigint not null default 0,
    retried bigint not null default 0,
    dead bigint not null default 0,
    expired bigint not null default 0,
    duration_count bigint not null default 0,
    duration_ms_sum double precision not null default 0,
    -- Completions by processing time: bucket 1 counts < 1 ms, bucket i
    -- [2^(i-2), 2^(i-1)) ms, the last (25) everything from 2^23 ms up.
    duration_buckets bigint[],
    ready bigint,
    in_flight bigint,
    delayed bigint,
    dead_letters bigint,
    enqueued_total bigint,
    -- Jobs enqueued in this minute by transactions that committed.
    enqueued bigint not null default 0,
    primary key (queue, minute)
);
comment on table pgmq_jobs.queue_history is
'Per-minute outcome counts and gauges of every queue, recorded by sweep()';

-- Committed enqueues of every queue folded so far (the sweep adds each
-- minute's from outcome_log): queue_stats.enqueued_total is this plus the log
-- not folded yet. One row per queue, written by the sweep only.
create table if not exists pgmq_jobs.queue_totals (
    queue text primary key references pgmq_jobs.queue_settings (queue) on delete cascade,
    enqueued bigint not null default 0
);
comment on table pgmq_jobs.queue_totals is
'Committed enqueues per queue folded from outcome_log by sweep(), for queue_stats.enqueued_total';

-- The sweep's per-minute samples of each queue table's tuple statistics, for
-- the table_bloat alert (which fires on dead tuples that persist, not on the
-- ones autovacuum is about to remove). written and vacuums are the
-- cumulative counters: rows inserted, updated or deleted (each can leave a
-- dead tuple) and vacuums (manual and auto). Kept two hours.
create table if not exists pgmq_jobs.table_samples (
    queue text not null references pgmq_jobs.queue_settings (queue) on delete cascade,
    dlq boolean not null,
    at timestamptz not null,
    n_dead bigint not null,
    n_live bigint not null,
    written bigint not null,
    vacuums bigint not null,
    primary key (queue, dlq, at)
);
comment on table pgmq_jobs.table_samples is
'Per-minute tuple statistics of each queue table and DLQ, recorded by sweep() for the table_bloat alert';

-- Cron schedules created by pgmq_jobs.schedule (the pg_cron job holds the timing).
create table if not exists pgmq_jobs.schedule_settings (
    name text primary key,
    cron text not null,
    queue text not null,
    payload jsonb not null default '{}',
    created_at timestamptz not null default pg_catalog.now(),
    updated_at timestamptz not null default pg_catalog.now()
);
comment on table pgmq_jobs.schedule_settings is
'Cron schedules that enqueue jobs; read them through the pgmq_jobs.schedules view';

-- Dedupe keys enqueued with a window: a later enqueue with the same key
-- within its own window returns this job id. Keys without a window need no
-- row: a unique index on the queue table covers unfinished jobs. The sweep
-- deletes rows past keep_until (the enqueuer's window).
create table if not exists pgmq_jobs.dedupe_keys (
    queue text not null,
    dedupe_key text not null,
    job_id bigint not null,
    created_at timestamptz not null default pg_catalog.clock_timestamp(),
    keep_until timestamptz not null,
    primary key (queue, dedupe_key)
);
create index if not exists dedupe_keys_keep_until_idx on pgmq_jobs.dedupe_keys (keep_until);
comment on table pgmq_jobs.dedupe_keys is
'Dedupe keys enqueued with a dedupe_window, kept for that window';

-- Operator actions, append-only (a trigger refuses updates and deletes).
create table if not exists pgmq_jobs.audit_log (
    id bigint generated always as identity primary key,
    at timestamptz not null default pg_catalog.clock_timestamp(),
    actor text not null,
    queue text,
    action text not null,
    change jsonb not null default '{}',
    -- The session's login role (session_user) beside actor, which names the
    -- SET ROLE role when there is one.
    session_role text
);
create index if not exists audit_log_at_idx on pgmq_jobs.audit_log (at);
comment on table pgmq_jobs.audit_log is
'Operator actions (configure, replay, purge, drop, schedule changes); read the audit view';

-- The schema version, written by the last file of sql/.
create table if not exists pgmq_jobs.schema_version (
    version text primary key,
    installed_at timestamptz not null default pg_catalog.now()
);
comment on table pgmq_jobs.schema_version is
'Versions of the pgmq_jobs schema applied to this database';

-- Result row types. Created once; kept stable because callers read them by name.
do $types$
begin
    if pg_catalog.to_regtype('pgmq_jobs.claimed_job') is null then
        create type pgmq_jobs.claimed_job as (
            job_id bigint,
            attempt integer,
            max_attempts integer,
            payload jsonb,
            enqueued_at timestamptz,
            visible_until timestamptz
        );
    end if;
    if pg_catalog.to_regtype('pgmq_jobs.fail_result') is null then
        create type pgmq_jobs.fail_result as (
            outcome text,
            attempt integer,
            next_attempt_at timestamptz
        );
    end if;
    if pg_catalog.to_regtype('pgmq_jobs.dead_letter') is null then
        create type pgmq_jobs.dead_letter as (
            dead_id bigint,
            job_id bigint,
            original_job_id bigint,
            payload jsonb,
            attempts integer,
            reason text,
            errors jsonb,
            last_error text,
            enqueued_at timestamptz,
            died_at timestamptz,
            replays integer
        );
    end if;
end
$types$;

comment on type pgmq_jobs.claimed_job is
'A delivery returned by claim: attempt is the fencing token for complete, fail and extend';
comment on type pgmq_jobs.fail_result is
'Result of fail: outcome is retry, dead or stale';
comment on type pgmq_jobs.dead_letter is
'A dead letter as returned by dead_letters';

-- ======================================================================
-- sql/001_extensions.sql
-- ======================================================================
-- 001_extensions.sql: optional extensions the schema can use where the server
-- offers them: pg_partman (partitioned queues). pg_cron is created by the
-- installer and the migration prologue (it may live in this database only).

do $extensions$
begin
    if not exists (select from pg_catalog.pg_extension where extname operator(pg_catalog.=) 'pg_partman')
        and exists (select from pg_catalog.pg_available_extensions where name operator(pg_catalog.=) 'pg_partman') then
        create schema if not exists partman;
        create extension pg_partman schema partman;
    end if;
end
$extensions$;

-- ======================================================================
-- sql/010_private_checks.sql
-- ======================================================================
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

-- ======================================================================
-- sql/012_private_payload_schema.sql
-- ======================================================================
-- 012_private_payload_schema.sql: a queue's payload_schema refers to nothing
-- outside itself. A JSON Schema validator resolves a "$ref" that names a file
-- or a URL by reading that file or fetching that URL on the database server
-- (and again at every enqueue); only references within the schema itself,
-- those starting with '#', are accepted when a schema is configured.

-- An error naming the first reference ($ref, $dynamicRef or $recursiveRef,
-- at any depth) that does not start with '#'.
create or replace function pgmq_jobs._check_schema_refs(schema jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    bad text;
begin
    select r.keyword || ' ' || (r.ref #>> '{}') into bad
    from (
        select '$ref' as keyword, jsonb_path_query(schema, 'lax $.**."$ref"') as ref
        union all
        select '$dynamicRef', jsonb_path_query(schema, 'lax $.**."$dynamicRef"')
        union all
        select '$recursiveRef', jsonb_path_query(schema, 'lax $.**."$recursiveRef"')
    ) as r
    where jsonb_typeof(r.ref) = 'string' and not starts_with(r.ref #>> '{}', '#')
    limit 1;
    if bad is not null then
        raise exception 'payload_schema may refer only to itself: % is not a reference within the schema (one starting with #)',
            quote_literal(left(bad, 200))
            using errcode = '22023',
            hint = 'Put the referenced schema under "$defs" and refer to it as "#/$defs/<name>".';
    end if;
end
$$;

-- ======================================================================
-- sql/020_private_lifecycle.sql
-- ======================================================================
-- 020_private_lifecycle.sql: private helpers of the job lifecycle: the retry
-- delay, error-history entries and the shape of a dead letter.

-- Delay before the retry that follows failed attempt n (1-based):
--   d = min(retry_max, retry_base * retry_factor^(n-1))
--   jitter none -> d; full -> uniform [0, d]; equal -> d/2 + uniform [0, d/2]
-- Computed in log space so that huge attempt numbers cap at retry_max
-- instead of overflowing.
create or replace function pgmq_jobs._retry_delay(
    attempt integer,
    retry_base interval,
    retry_max interval,
    retry_factor double precision,
    jitter text
)
returns interval
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    base_s double precision := extract(epoch from retry_base);
    max_s double precision := extract(epoch from retry_max);
    d double precision;
begin
    if retry_factor <= 1 or attempt <= 1 then
        d := least(base_s, max_s);
    elsif (attempt - 1) * ln(retry_factor) >= ln(max_s / base_s) then
        d := max_s;
    else
        d := least(max_s, base_s * power(retry_factor, attempt - 1));
    end if;
    d := case jitter
        when 'none' then d
        when 'full' then random() * d
        when 'equal' then d / 2 + random() * (d / 2)
    end;
    return make_interval(secs => d);
end
$$;

-- One entry of a job's error history. PL/pgSQL: a SQL function that pins
-- its search_path is not inlined, and called once per row (fail_batch) it
-- cost about twice as much.
create or replace function pgmq_jobs._error_entry(
    attempt integer, error text, worker jsonb, at timestamptz
)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    return jsonb_strip_nulls(jsonb_build_object(
        'attempt', attempt,
        'at', at,
        -- Error texts (tracebacks) are kept up to 8 KiB characters each.
        'error', case when length(error) > 8192 then left(error, 8192) || '…[truncated]' else error end,
        'worker', worker
    ));
end
$$;

-- The message stored in <queue>_dlq for a job that died. "errors" holds every
-- recorded error with its time; final_error (if any) is appended last.
create or replace function pgmq_jobs._dead_letter(
    queue text,
    job_id bigint,
    payload jsonb,
    attempts integer,
    headers jsonb,
    enqueued_at timestamptz,
    reason text,
    final_error jsonb
)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    return jsonb_build_object(
        'queue', queue,
        'job_id', job_id,
        'original_job_id', coalesce((headers ->> 'original_job_id')::bigint, job_id),
        'payload', payload,
        'attempts', attempts,
        'reason', reason,
        'errors', coalesce(headers -> 'errors', '[]'::jsonb)
            || case when final_error is null then '[]'::jsonb else jsonb_build_array(final_error) end,
        'enqueued_at', coalesce((headers ->> 'first_enqueued_at')::timestamptz, enqueued_at),
        'died_at', clock_timestamp(),
        'replays', coalesce((headers ->> 'replays')::integer, 0),
        'max_attempts', headers -> 'max_attempts',
        'group_key', headers -> 'group_key',
        'priority', headers -> 'priority',
        'dedupe_key', headers -> 'dedupe_key'
    );
end
$$;

-- Is delivery read_ct of a job still open, i.e. not yet failed? A failed
-- delivery records its error under its attempt number; until the job is
-- claimed again (read_ct + 1) that delivery accepts no further outcome.
create or replace function pgmq_jobs._open_delivery(headers jsonb, read_ct integer)
returns boolean
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce((headers #>> '{errors,-1,attempt}')::integer, 0) < read_ct
$$;

-- The same test as SQL text over a row alias, for the job path's dynamic
-- statements: a call of a function that pins search_path costs ~2 us per
-- row, the inline expression a tenth of that. Built once per call.
create or replace function pgmq_jobs._sql_open_delivery(alias text)
returns text
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
    select format(
        $sql$(coalesce((%1$I.headers #>> '{errors,-1,attempt}')::integer, 0) < %1$I.read_ct)$sql$,
        alias
    )
$$;

-- Wake idle workers of a queue: NOTIFY on channel pgmq_jobs_<queue>, sent at
-- commit (never for a rolled-back enqueue) and folded into one per
-- transaction, and only while a worker waits for it (wait_for_jobs): a
-- NOTIFY serialises concurrent commits cluster-wide. Workers that cannot
-- LISTEN (transaction poolers) poll instead.
create or replace function pgmq_jobs._wake(queue text, notify boolean)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if notify and exists (select from pgmq_jobs.waiting_workers as w where w.queue = _wake.queue) then
        perform pg_notify('pgmq_jobs_' || queue, '');
    end if;
end
$$;

-- A job's headers after its delivery read_ct timed out without an outcome:
-- when that delivery is still open, its error history gains a "visibility
-- timeout expired" entry dated when the timeout ran out (vt). PL/pgSQL, not
-- SQL: a SQL function that calls SQL functions plans them anew on each call
-- (88 against 26 us a row, routing a thousand stalled jobs).
create or replace function pgmq_jobs._timed_out(headers jsonb, read_ct integer, vt timestamptz)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if read_ct > 0 and pgmq_jobs._open_delivery(headers, read_ct) then
        return jsonb_set(
            coalesce(headers, '{}'), '{errors}',
            coalesce(headers -> 'errors', '[]')
            || pgmq_jobs._error_entry(
                read_ct, 'visibility timeout expired without an outcome', headers -> 'worker', vt
            )
        );
    end if;
    return headers;
end
$$;

-- Route the given deliveries of a queue, already locked and past their
-- attempts, to its dead-letter queue with reason expired. Returns how many.
create or replace function pgmq_jobs._route_expired(queue text, job_ids bigint[], attempts integer[])
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    routed integer;
    groups text[];
begin
    execute format(
        $sql$
        with dead as (
            delete from pgmq.%1$I as q
            using unnest($1, $2) as t (job_id, attempt)
            where q.msg_id = t.job_id and q.read_ct = t.attempt
            returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        ),
        routed as (
            insert into pgmq.%2$I (vt, message)
            select
                clock_timestamp(),
                pgmq_jobs._dead_letter(
                    %3$L, d.msg_id, d.message, d.read_ct,
                    pgmq_jobs._timed_out(d.headers, d.read_ct, d.vt), d.enqueued_at, 'expired', null
                )
            from dead as d
            returning msg_id
        )
        select
            (select count(*) from routed),
            array_agg(d.headers ->> 'group_key') filter (where d.headers ? 'group_key')
        from dead as d
        $sql$,
        'q_' || queue, 'q_' || queue || '_dlq', queue
    ) into routed, groups using job_ids, attempts;
    if routed > 0 then
        insert into pgmq_jobs.outcome_log (queue, expired) values (queue, routed);
    end if;
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;
    return routed;
end
$$;

-- Processing times as count, sum and power-of-two histogram of 35 buckets.
-- Buckets 1..25 are those of 0.1.0, but for the first: bucket 1 counts
-- [0.5, 1) ms, bucket i (2..24) [2^(i-2), 2^(i-1)) ms, bucket 25 everything
-- from 2^23 ms (2.3 hours) up. Below half a millisecond, appended so that
-- histograms of both releases add up element by element: bucket 26 counts
-- [0, 2^-10) ms (under about a microsecond), bucket i (27..35)
-- [2^(i-37), 2^(i-36)) ms. (0.1.0's bucket 1 counted all of [0, 1) ms with 25
-- buckets; queue_stats reads it so.) A loop over the array (exact
-- bounds through width_bucket; plans cached): complete calls this for every
-- batch, and a set-based SQL function was planned anew on each call.
create or replace function pgmq_jobs._duration_histogram(durations_ms double precision[])
returns table (n integer, total double precision, buckets integer[])
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    -- 2^-10 .. 2^23 ms: width_bucket gives 0 below 2^-10, k for
    -- [2^(k-11), 2^(k-10)), 34 from 2^23 up.
    bounds constant double precision[] := array(select 2.0 ^ i from generate_series(-10, 23) as i);
    ms double precision;
    k integer;
    i integer;
begin
    n := 0;
    total := 0;
    buckets := array_fill(0, array[35]);
    foreach ms in array coalesce(durations_ms, '{}') loop
        -- Unmeasurable times are left out rather than fail the completion.
        continue when ms is null or ms = 'NaN' or ms = 'Infinity';
        ms := greatest(ms, 0);
        n := n + 1;
        total := total + ms;
        k := width_bucket(ms, bounds);
        -- k 0..9: below 0.5 ms (buckets 26..35); k 10: [0.5, 1) ms (bucket 1);
        -- k 11..34: bucket k - 9 (2..25).
        i := case when k < 10 then k + 26 else k - 9 end;
        buckets[i] := buckets[i] + 1;
    end loop;
    return next;
end
$$;

-- Element-wise sum of histograms (null-tolerant), for folding.
create or replace function pgmq_jobs._add_buckets(a bigint[], b bigint[])
returns bigint[]
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
    select case
        when a is null then b
        when b is null then a
        else (select array_agg(coalesce(a[i], 0) + coalesce(b[i], 0) order by i)
            from generate_series(1, greatest(cardinality(a), cardinality(b))) as i)
    end
$$;

-- The element-wise sum of many histograms, given as the jsonb_agg of their
-- arrays (nulls and different lengths tolerated), for the sweep's fold. A
-- function rather than an aggregate over _add_buckets: an aggregate cannot pin
-- its search_path, and Supabase's security advisor reports every routine that
-- does not (issue 18, finding 10; the upgrade drops 0.1.0's aggregate
-- _sum_buckets(bigint[])).
create or replace function pgmq_jobs._sum_buckets(histograms jsonb)
returns bigint[]
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
    select array_agg(t.total order by t.i)
    from (
        select b.i, sum(b.n::bigint) as total
        from jsonb_array_elements(histograms) as h (a)
        cross join lateral jsonb_array_elements_text(
            case when jsonb_typeof(h.a) = 'array' then h.a else '[]' end
        ) with ordinality as b (n, i)
        group by b.i
    ) as t
$$;

-- ======================================================================
-- sql/020_private_lifecycle_run.sql
-- ======================================================================
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

-- ======================================================================
-- sql/022_private_fail.sql
-- ======================================================================
-- 022_private_fail.sql: the failure reports of fail and fail_batch, set-based.
--
-- One UPDATE schedules the retries of every open delivery given (fenced on
-- read_ct and on the delivery not having failed already); only when some
-- deliveries remain does one DELETE move the permanent and exhausted ones to
-- the dead-letter queue. What neither statement touched is stale.

create or replace function pgmq_jobs._fail_deliveries(
    queue text,
    s pgmq_jobs.queue_settings,
    job_ids bigint[],
    attempts integer[],
    errors text[],
    retry_afters interval[],
    permanents boolean[]
)
returns table (job_id bigint, outcome text, attempt integer, next_attempt_at timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    retried_ids bigint[];
    retried_at timestamptz[];
    dead_ids bigint[] := '{}';
    groups text[];
    stale_max bigint;
begin
    execute format(
        $sql$
        with retried as (
            update pgmq.%1$I as q
            set
                vt = clock_timestamp()
                    + coalesce(t.retry_after, pgmq_jobs._retry_delay(t.attempt, $6, $7, $8, $9)),
                headers = jsonb_set(
                    coalesce(q.headers, '{}'), '{errors}',
                    coalesce(q.headers -> 'errors', '[]')
                    || pgmq_jobs._error_entry(t.attempt, t.error, q.headers -> 'worker', clock_timestamp())
                )
            from unnest($1, $2, $3, $4, $5) as t (job_id, attempt, error, retry_after, permanent)
            where q.msg_id = t.job_id and q.read_ct = t.attempt and %2$s
                and not t.permanent
                and t.attempt < coalesce((q.headers ->> 'max_attempts')::integer, $10)
            returning q.msg_id, q.vt
        )
        select coalesce(array_agg(r.msg_id), '{}'), coalesce(array_agg(r.vt), '{}') from retried as r
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into retried_ids, retried_at
    using job_ids, attempts, errors, retry_afters, permanents,
        s.retry_base, s.retry_max, s.retry_factor, s.jitter, s.max_attempts;

    if cardinality(retried_ids) < cardinality(job_ids) then
        execute format(
            $sql$
            with dead as (
                delete from pgmq.%1$I as q
                using unnest($1, $2, $3, $4) as t (job_id, attempt, error, permanent)
                where q.msg_id = t.job_id and q.read_ct = t.attempt and %4$s
                    and (t.permanent or t.attempt >= coalesce((q.headers ->> 'max_attempts')::integer, $5))
                returning q.msg_id, q.read_ct, q.enqueued_at, q.message, q.headers, t.error, t.permanent
            ),
            routed as (
                insert into pgmq.%2$I (vt, message)
                select clock_timestamp(), pgmq_jobs._dead_letter(
                    %3$L, d.msg_id, d.message, d.read_ct, d.headers, d.enqueued_at,
                    case when d.permanent then 'permanent' else 'exhausted' end,
                    pgmq_jobs._error_entry(d.read_ct, d.error, d.headers -> 'worker', clock_timestamp())
                )
                from dead as d
            )
            select
                coalesce(array_agg(d.msg_id), '{}'),
                array_agg(d.headers ->> 'group_key') filter (where d.headers ? 'group_key')
            from dead as d
            $sql$,
            'q_' || queue, 'q_' || queue || '_dlq', queue, pgmq_jobs._sql_open_delivery('q')
        ) into dead_ids, groups
        using job_ids, attempts, errors, permanents, s.max_attempts;

        -- Neither retried nor dead: stale, unless the queue never issued the id.
        select max(t.id) into stale_max
        from unnest(job_ids) as t (id)
        where t.id <> all(retried_ids) and t.id <> all(dead_ids);
        if stale_max is not null then
            perform pgmq_jobs._check_job_issued(queue, stale_max);
        end if;
    end if;

    if cardinality(retried_ids) + cardinality(dead_ids) > 0 then
        insert into pgmq_jobs.outcome_log (queue, retried, dead)
        values (queue, cardinality(retried_ids), cardinality(dead_ids));
    end if;
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;

    return query
    select
        t.id,
        case when r.id is not null then 'retry' when t.id = any(dead_ids) then 'dead' else 'stale' end,
        t.att,
        r.at
    from unnest(job_ids, attempts) with ordinality as t (id, att, ord)
    left join unnest(retried_ids, retried_at) as r (id, at) on r.id = t.id
    order by t.ord;
end
$$;

-- ======================================================================
-- sql/030_private_cron.sql
-- ======================================================================
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

-- ======================================================================
-- sql/040_private_audit.sql
-- ======================================================================
-- 040_private_audit.sql: private helpers of the audit trail: who is acting,
-- and one append-only row per operator action.

-- The role acting: the SET ROLE role when there is one (PostgREST and
-- poolers switch roles that way), else the session's login role. The "role"
-- setting is trustworthy: PostgreSQL only lets a session set a role it is a
-- member of, and SECURITY DEFINER functions do not change it.
create or replace function pgmq_jobs._actor()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select case
        when coalesce(current_setting('role', true), 'none') = 'none' then session_user::text
        else current_setting('role', true)
    end
$$;

create or replace function pgmq_jobs._audit(queue text, action text, change jsonb)
returns void
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    insert into pgmq_jobs.audit_log (actor, queue, action, change, session_role)
    values (pgmq_jobs._actor(), queue, action, coalesce(change, '{}'), session_user::text)
$$;

-- The audit log is append-only, for its owner too.
create or replace function pgmq_jobs._audit_log_append_only()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    raise exception 'pgmq_jobs.audit_log is append-only' using errcode = '42501';
end
$$;

-- A DO block is parsed under the installing session's search_path: every
-- operator in it is schema-qualified (issue 18, finding 2; oid = regclass has
-- no exact match in pg_catalog, so one planted in public would run here).
do $trigger$
begin
    if not exists (
        select from pg_catalog.pg_trigger
        where tgname operator(pg_catalog.=) 'audit_log_append_only'
            and tgrelid operator(pg_catalog.=) 'pgmq_jobs.audit_log'::pg_catalog.regclass
    ) then
        create trigger audit_log_append_only
        before update or delete or truncate on pgmq_jobs.audit_log
        for each statement execute function pgmq_jobs._audit_log_append_only();
    end if;
end
$trigger$;

-- ======================================================================
-- sql/050_private_groups.sql
-- ======================================================================
-- 050_private_groups.sql: private helpers of ordered groups and unique jobs.
--
-- A group's jobs are delivered one at a time in enqueue order. Only the
-- group's head (its lowest job id still in the queue: waiting, in flight or
-- waiting to retry) is ever visible; later jobs are parked with vt =
-- 'infinity' and their intended time in headers.run_at. When the head leaves
-- the queue (completed or dead-lettered), the next one is released. Claim
-- therefore stays a plain walk of the vt index, however many groups wait.
-- Enqueue and release of a group serialise on a transaction-level advisory
-- lock per (queue, group), so a job is never parked behind a head that is
-- leaving at the same moment.

create or replace function pgmq_jobs._group_lock(queue text, group_key text)
returns void
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    select pg_advisory_xact_lock(hashtext('pgmq_jobs.group:' || queue), hashtext(group_key))
$$;

-- Is any job of this group in the queue (a head that later jobs wait for)?
create or replace function pgmq_jobs._group_busy(queue text, group_key text)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    busy boolean;
begin
    execute format(
        $sql$
        select exists (
            select from pgmq.%I as q
            where (q.headers ->> 'group_key') = $1 and q.headers ? 'group_key'
        )
        $sql$,
        'q_' || queue
    ) into busy using group_key;
    return busy;
end
$$;

-- After jobs of these groups left the queue: make each group's new head
-- visible (at its intended time) if it is parked. Returns how many. Set-based:
-- the groups' locks in one statement (in key order, as enqueue takes them one
-- at a time, so no two transactions wait on each other in a cycle), then one
-- update finds every group's head through the group index.
create or replace function pgmq_jobs._release_groups(queue text, group_keys text[])
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    keys text[];
    released integer;
begin
    select array_agg(distinct g order by g) into keys
    from unnest(group_keys) as g
    where g is not null;
    if keys is null then
        return 0;
    end if;
    perform pgmq_jobs._group_lock(queue, t.k)
    from unnest(keys) with ordinality as t (k, n)
    order by t.n;
    execute format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = greatest(clock_timestamp(), coalesce((q.headers ->> 'run_at')::timestamptz, '-infinity')),
            headers = q.headers - 'run_at'
        from (
            select (
                select h.msg_id from pgmq.%1$I as h
                where (h.headers ->> 'group_key') = k.key and h.headers ? 'group_key'
                order by h.msg_id
                limit 1
            ) as msg_id
            from unnest($1) as k (key)
        ) as head
        where q.msg_id = head.msg_id and q.vt = 'infinity'
        $sql$,
        'q_' || queue
    ) using keys;
    get diagnostics released = row_count;
    if released > 0 then
        perform pgmq_jobs._wake(queue, coalesce(
            (select qs.notify from pgmq_jobs.queue_settings as qs where qs.queue = _release_groups.queue),
            true
        ));
    end if;
    return released;
end
$$;

-- Open deliveries of a queue (claimed, visibility timeout running, no outcome
-- yet), counted over the partial index of delivered jobs.
create or replace function pgmq_jobs._in_flight(queue text)
returns integer
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    n integer;
begin
    execute format(
        $sql$
        select count(*) from pgmq.%I as q
        where q.vt > $1 and q.read_ct > 0 and %2$s
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into n using clock_timestamp();
    return n;
end
$$;

-- ======================================================================
-- sql/055_private_queue_tables.sql
-- ======================================================================
-- 055_private_queue_tables.sql: what pgmq-jobs adds to the PGMQ tables of a
-- queue: its indexes and its privileges. create_queue calls both helpers;
-- sql/890_queue_tables.sql calls them for every existing queue on each
-- install or upgrade, so a queue made by an earlier release gets what a new
-- one has (an upgraded database equals a fresh one, pg_dump for pg_dump).

-- The statement that builds a queue's priority index (concurrently or not).
-- Claim walks it one priority at a time, highest first, each by visibility
-- time, so the jobs waiting for a later time at any priority are never read
-- (sql/120_claim.sql). A job's priority is headers.priority, 0 when absent;
-- the expression is written exactly so in claim and job.
create or replace function pgmq_jobs._priority_index_sql(queue text, online boolean)
returns text
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.format(
        $sql$create index %s if not exists %I on pgmq.%I
        ((coalesce((headers ->> 'priority')::smallint, 0::smallint)), vt)$sql$,
        case when online then 'concurrently' else '' end,
        'q_' || queue || '_priority_vt', 'q_' || queue
    )
$$;

-- The indexes of a queue's table beside PGMQ's own (msg_id, vt). Returns
-- whether the priority index is built: with defer_priority (an upgrade by
-- pgmq-jobs install) an unpartitioned queue's is left for install to build
-- concurrently after the transaction (_finish_priority_index).
create or replace function pgmq_jobs._queue_indexes(
    queue text, partitioned boolean, defer_priority boolean default false
)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    -- Deliveries that timed out or wait to retry (read_ct > 0): the sweep
    -- finds stalled jobs through this small index, not by walking the queue.
    execute format(
        'create index if not exists %I on pgmq.%I (vt) where read_ct > 0',
        'q_' || queue || '_delivered_vt', 'q_' || queue
    );
    -- Unique jobs: at most one unfinished job per dedupe key (no window). A
    -- unique index cannot span partitions (it would need msg_id): there the
    -- per-key advisory lock in enqueue alone keeps producers apart.
    execute format(
        $sql$create %s index if not exists %I on pgmq.%I ((headers ->> 'dedupe_key'))
        where headers ? 'dedupe_key'$sql$,
        case when partitioned then '' else 'unique' end, 'q_' || queue || '_dedupe', 'q_' || queue
    );
    -- Ordered groups: a group's jobs in enqueue order.
    execute format(
        $sql$create index if not exists %I on pgmq.%I ((headers ->> 'group_key'), msg_id)
        where headers ? 'group_key'$sql$,
        'q_' || queue || '_group', 'q_' || queue
    );
    -- A dead letter by its job id (job() looks a dead job up so).
    execute format(
        $sql$create index if not exists %I on pgmq.%I ((message -> 'job_id'))$sql$,
        'q_' || queue || '_dlq_job_id', 'q_' || queue || '_dlq'
    );
    if defer_priority and not partitioned then
        return false;
    end if;
    execute pgmq_jobs._priority_index_sql(queue, false);
    return true;
end
$$;

-- The first job of another priority than 0 in a queue: from now on claim walks
-- its priorities (until then the plain vt walk, which costs less, is right).
-- Only this first call writes the settings row; later ones find it set.
create or replace function pgmq_jobs._mark_prioritized(queue text)
returns void
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    update pgmq_jobs.queue_settings as qs
    set prioritized = true
    where qs.queue operator(pg_catalog.=) _mark_prioritized.queue and not qs.prioritized
$$;

-- After pgmq-jobs install built a queue's priority index concurrently: if
-- the index is valid, claim may walk it from now on. Returns whether it is.
create or replace function pgmq_jobs._finish_priority_index(queue text)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    ready boolean;
begin
    select coalesce(i.indisvalid and i.indisready, false) into ready
    from pg_catalog.pg_index as i
    where i.indexrelid operator(pg_catalog.=) pg_catalog.to_regclass(
        pg_catalog.format('pgmq.%I', 'q_' || queue || '_priority_vt')
    );
    update pgmq_jobs.queue_settings as qs
    set priority_index = coalesce(ready, false)
    where qs.queue operator(pg_catalog.=) _finish_priority_index.queue
        and qs.priority_index is distinct from coalesce(ready, false);
    return coalesce(ready, false);
end
$$;

-- Job payloads are readable only by the schema's owner and the roles the
-- project grants: PGMQ grants pg_monitor SELECT on every table it makes (its
-- default privileges in schema pgmq), so a monitoring role would read every
-- payload. Revoke that on a queue's tables (queue, archive, dead-letter queue
-- and its archive, and every partition of a partitioned one), and have
-- pg_partman give new partitions their parent's privileges (issue 18,
-- finding 7). sql/890_queue_tables.sql does the same for older queues.
create or replace function pgmq_jobs._revoke_monitor_read(queue text)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    t record;
    partman text := pgmq_jobs._partman_schema();
begin
    for t in
        with recursive tables (oid) as (
            select c.oid from pg_catalog.pg_class as c
            where c.relnamespace = 'pgmq'::regnamespace
                and c.relname = any(array[
                    'q_' || queue, 'a_' || queue, 'q_' || queue || '_dlq', 'a_' || queue || '_dlq'
                ])
            union
            select i.inhrelid from pg_catalog.pg_inherits as i
            inner join tables on i.inhparent = tables.oid
        )
        select n.nspname, c.relname
        from tables
        inner join pg_catalog.pg_class as c on c.oid = tables.oid
        inner join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
    loop
        execute format('revoke all on table %I.%I from pg_monitor', t.nspname, t.relname);
    end loop;
    if partman is not null then
        execute format(
            'update %I.part_config set inherit_privileges = true'
            ' where parent_table = any($1) and not inherit_privileges',
            partman
        ) using array['pgmq.q_' || queue, 'pgmq.a_' || queue];
    end if;
end
$$;

-- ======================================================================
-- sql/060_private_job_control.sql
-- ======================================================================
-- 060_private_job_control.sql: the record of cancelled jobs and the states of
-- a job in its queue, shared by cancel, job, reschedule and snooze.

-- Jobs removed from their queue by cancel: what job() reports as state
-- 'cancelled', with the job's payload, headers (error history, keys) and
-- attempts at that moment. The sweep deletes rows older than the queue's
-- keep_completed (a walk of the (queue, cancelled_at) index); dropping the
-- queue deletes its rows (the foreign key), so a queue created again under
-- the same name, whose job ids start over, never reports another one's.
create table if not exists pgmq_jobs.cancelled_jobs (
    queue text not null references pgmq_jobs.queue_settings (queue) on delete cascade,
    job_id bigint not null,
    payload jsonb,
    headers jsonb,
    attempt integer not null,
    enqueued_at timestamptz not null,
    -- The job's state when it was cancelled: waiting, delayed, in_flight,
    -- retrying or parked.
    state text not null,
    cancelled_at timestamptz not null default pg_catalog.clock_timestamp(),
    cancelled_by text not null,
    primary key (queue, job_id)
);
create index if not exists cancelled_jobs_cancelled_at_idx
on pgmq_jobs.cancelled_jobs (queue, cancelled_at);
comment on table pgmq_jobs.cancelled_jobs is
'Jobs cancelled with pgmq_jobs.cancel, kept as long as completions (keep_completed); read them with pgmq_jobs.job';

-- The state of a job still in its queue table, from its row and the time now:
--   parked    vt = 'infinity': a group member waiting behind its group's head
--             (its own time is headers.run_at);
--   waiting   never delivered (read_ct 0; a release or snooze of its only
--             delivery undoes that delivery), visible now;
--   delayed   never delivered, visible later (delay, run_at, reschedule,
--             snooze of its first delivery);
--   in_flight an open delivery (read_ct > 0, no failure recorded for attempt
--             read_ct) whose visibility timeout is still running;
--   retrying  delivered before and no delivery running: the last one failed,
--             timed out without an outcome, or was snoozed after a failed one;
--             it waits for its next delivery, whether its retry time has come
--             (visible, not claimed yet) or not.
create or replace function pgmq_jobs._job_state(
    vt timestamptz, read_ct integer, headers jsonb, now timestamptz
)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    return case
        when vt = 'infinity' then 'parked'
        when read_ct <= 0 and vt > now then 'delayed'
        when read_ct <= 0 then 'waiting'
        when vt > now and pgmq_jobs._open_delivery(headers, read_ct) then 'in_flight'
        else 'retrying'
    end;
end
$$;

-- The checks of a list of job ids given to cancel and reschedule.
create or replace function pgmq_jobs._check_job_ids(job_ids bigint[])
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if job_ids is null then
        raise exception 'job_ids must not be null' using errcode = '22004';
    end if;
    if array_position(job_ids, null) is not null then
        raise exception 'job_ids must not contain nulls' using errcode = '22004';
    end if;
    if cardinality(job_ids) > 100000 then
        raise exception 'job_ids may hold at most 100000 ids, got %', cardinality(job_ids)
            using errcode = '22023';
    end if;
end
$$;

-- ======================================================================
-- sql/100_create_queue.sql
-- ======================================================================
-- 100_create_queue.sql: create_queue, the PGMQ queue plus its dead-letter
-- queue <queue>_dlq and its settings row.

create or replace function pgmq_jobs.create_queue(
    queue text,
    max_attempts integer default 5,
    visibility_timeout interval default interval '30 seconds',
    retry_base interval default interval '1 second',
    retry_max interval default interval '5 minutes',
    retry_factor double precision default 2,
    jitter text default 'full',
    keep_completed interval default interval '7 days',
    max_payload_bytes integer default 1048576,
    unlogged boolean default false,
    notify boolean default true,
    handler text default null,
    dead_letter_retention interval default null,
    concurrency integer default null,
    partitioned boolean default false,
    partition_interval text default '10000',
    retention_interval text default '100000'
)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings;
begin
    perform pgmq_jobs._check_queue_name(queue);
    s.queue := queue;
    s.max_attempts := max_attempts;
    s.visibility_timeout := visibility_timeout;
    s.retry_base := retry_base;
    s.retry_max := retry_max;
    s.retry_factor := retry_factor;
    s.jitter := jitter;
    s.keep_completed := keep_completed;
    s.max_payload_bytes := max_payload_bytes;
    s.unlogged := coalesce(unlogged, false);
    s.notify := coalesce(notify, true);
    -- The handler is bound by identity now (and the caller must hold EXECUTE on it).
    if handler is not null then
        s.handler_oid := pgmq_jobs._handler_oid(handler, pgmq_jobs._actor());
        s.handler := pgmq_jobs._handler_name(s.handler_oid);
    end if;
    s.dead_letter_retention := dead_letter_retention;
    s.concurrency := concurrency;
    s.partitioned := coalesce(partitioned, false);
    if s.partitioned then
        if s.unlogged then
            raise exception 'a queue cannot be both partitioned and unlogged' using errcode = '22023';
        end if;
        if partition_interval is null or retention_interval is null
            or partition_interval !~ '^[0-9a-z ]{1,40}$' or retention_interval !~ '^[0-9a-z ]{1,40}$' then
            raise exception 'partition_interval and retention_interval must be a number of jobs (''10000'') or a time interval (''1 day''), got % and %',
                coalesce(quote_literal(partition_interval), 'null'),
                coalesce(quote_literal(retention_interval), 'null')
                using errcode = '22023';
        end if;
        if (partition_interval ~ '^[0-9]+$') <> (retention_interval ~ '^[0-9]+$') then
            raise exception 'partition_interval and retention_interval must both be job counts or both time intervals'
                using errcode = '22023';
        end if;
        if pgmq_jobs._partman_schema() is null then
            raise exception 'partitioned queues need the pg_partman extension, which is not installed here'
                using errcode = '55000',
                hint = 'create extension pg_partman (Debian: postgresql-15-partman), then re-run pgmq-jobs install.';
        end if;
        s.partition_interval := partition_interval;
        s.retention_interval := retention_interval;
    end if;
    perform pgmq_jobs._check_settings(s);

    -- Serialise concurrent create/drop of the same queue.
    perform pg_advisory_xact_lock(hashtext('pgmq_jobs.queue:' || queue));

    if exists (select from pgmq_jobs.queue_settings as qs where qs.queue = create_queue.queue) then
        raise notice 'queue % already exists; its settings are unchanged (use pgmq_jobs.configure_queue)',
            quote_literal(queue);
        return false;
    end if;

    if s.partitioned then
        perform pgmq.create_partitioned(queue, s.partition_interval, s.retention_interval);
        -- pg_partman's retention may drop only completed jobs (the archive): on the
        -- queue table it would drop waiting, delayed or retrying jobs with their
        -- partition. And claim needs the vt index that create_partitioned omits.
        execute format(
            'update %I.part_config set retention = null where parent_table = %L',
            pgmq_jobs._partman_schema(),
            'pgmq.q_' || queue
        );
        execute format('create index if not exists %I on pgmq.%I (vt)', 'q_' || queue || '_vt_idx', 'q_' || queue);
    elsif s.unlogged then
        perform pgmq.create_unlogged(queue);
    else
        perform pgmq.create(queue);
    end if;
    perform pgmq.create(queue || '_dlq');
    s.priority_index := pgmq_jobs._queue_indexes(queue, s.partitioned);
    s.prioritized := false;
    perform pgmq_jobs._revoke_monitor_read(queue);

    s.created_at := now();
    s.updated_at := now();
    insert into pgmq_jobs.queue_settings values (s.*);
    perform pgmq_jobs._sync_handler_job(queue);
    perform pgmq_jobs._sync_partman_job();
    perform pgmq_jobs._audit(queue, 'create_queue', to_jsonb(s) - 'queue' - 'created_at' - 'updated_at'
        || pgmq_jobs._handler_check_record(s.handler_oid));
    return true;
end
$$;

comment on function pgmq_jobs.create_queue(
    text, integer, interval, interval, interval, double precision, text, interval, integer, boolean,
    boolean, text, interval, integer, boolean, text, text
) is
'Create a job queue: the PGMQ queue, its dead-letter queue <queue>_dlq and its retry policy.
Idempotent: on an existing queue it changes nothing and returns false (use configure_queue).
Backoff after failed attempt n: min(retry_max, retry_base * retry_factor^(n-1)) with jitter
none | full | equal. keep_completed = 0 deletes completed jobs instead of archiving them.
unlogged queues are faster but lose their jobs if PostgreSQL crashes. notify: enqueues wake
idle workers through NOTIFY pgmq_jobs_<queue> at commit (workers also poll). handler names a
SQL function fn(payload jsonb) that runs the jobs inside the database (see process; pg_cron
drives it). dead_letter_retention: the sweep drops dead letters older than that (null: keep).
concurrency: at most that many jobs of the queue in flight across all workers (null: no limit).
partitioned: a PGMQ partitioned queue through pg_partman, partitioned by job id when
partition_interval is a number, else by enqueue time; retention_interval applies to the
archive only (never to waiting jobs). Everything else works the same on it.';

-- ======================================================================
-- sql/101_configure_queue.sql
-- ======================================================================
-- 101_configure_queue.sql: configure_queue, change a queue's settings.

create or replace function pgmq_jobs.configure_queue(
    queue text,
    max_attempts integer default null,
    visibility_timeout interval default null,
    retry_base interval default null,
    retry_max interval default null,
    retry_factor double precision default null,
    jitter text default null,
    keep_completed interval default null,
    max_payload_bytes integer default null,
    notify boolean default null,
    handler text default null,
    dead_letter_retention interval default null,
    -- -1 (the default) keeps the limit; null removes it; 0 pauses the queue.
    concurrency integer default -1,
    -- A JSON Schema for payloads; 'null'::jsonb removes it, null keeps it.
    payload_schema jsonb default null
)
returns pgmq_jobs.queue_settings
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings;
    old pgmq_jobs.queue_settings;
    changes jsonb;
begin
    perform pgmq_jobs._settings(queue);
    select * into strict s from pgmq_jobs.queue_settings as qs
    where qs.queue = configure_queue.queue
    for update;
    old := s;
    s.max_attempts := coalesce(max_attempts, s.max_attempts);
    s.visibility_timeout := coalesce(visibility_timeout, s.visibility_timeout);
    s.retry_base := coalesce(retry_base, s.retry_base);
    s.retry_max := coalesce(retry_max, s.retry_max);
    s.retry_factor := coalesce(retry_factor, s.retry_factor);
    s.jitter := coalesce(jitter, s.jitter);
    s.keep_completed := coalesce(keep_completed, s.keep_completed);
    s.max_payload_bytes := coalesce(max_payload_bytes, s.max_payload_bytes);
    s.notify := coalesce(notify, s.notify);
    -- '' clears the handler / the retention ('0' means drop at once), null keeps it.
    -- A handler given is bound by identity now (the caller must hold EXECUTE on
    -- it); giving the same one again binds it anew (after it was re-created).
    if handler = '' then
        s.handler := null;
        s.handler_oid := null;
    elsif handler is not null then
        s.handler_oid := pgmq_jobs._handler_oid(handler, pgmq_jobs._actor());
        s.handler := pgmq_jobs._handler_name(s.handler_oid);
    end if;
    s.dead_letter_retention := coalesce(dead_letter_retention, s.dead_letter_retention);
    s.concurrency := case when concurrency = -1 then s.concurrency else concurrency end;
    s.payload_schema := case
        when payload_schema = 'null'::jsonb then null
        else coalesce(payload_schema, s.payload_schema)
    end;
    perform pgmq_jobs._check_settings(s);
    select coalesce(jsonb_object_agg(n.key, jsonb_build_object('from', o.value, 'to', n.value)), '{}')
    into changes
    from jsonb_each(to_jsonb(s)) as n
    join jsonb_each(to_jsonb(old)) as o on o.key = n.key
    where n.value is distinct from o.value and n.key <> 'updated_at';
    -- Nothing changes: nothing is written, nothing audited.
    if changes = '{}' then
        perform pgmq_jobs._sync_handler_job(queue);
        return old;
    end if;
    s.updated_at := now();
    update pgmq_jobs.queue_settings as qs set
        max_attempts = s.max_attempts,
        visibility_timeout = s.visibility_timeout,
        retry_base = s.retry_base,
        retry_max = s.retry_max,
        retry_factor = s.retry_factor,
        jitter = s.jitter,
        keep_completed = s.keep_completed,
        max_payload_bytes = s.max_payload_bytes,
        notify = s.notify,
        handler = s.handler,
        dead_letter_retention = s.dead_letter_retention,
        concurrency = s.concurrency,
        payload_schema = s.payload_schema,
        updated_at = s.updated_at,
        handler_oid = s.handler_oid
    where qs.queue = configure_queue.queue;
    perform pgmq_jobs._sync_handler_job(queue);
    perform pgmq_jobs._audit(queue, 'configure_queue', changes || case
        when handler <> '' then pgmq_jobs._handler_check_record(s.handler_oid) else '{}'::jsonb
    end);
    return s;
end
$$;

comment on function pgmq_jobs.configure_queue(
    text, integer, interval, interval, interval, double precision, text, interval, integer, boolean,
    text, interval, integer, jsonb
) is
'Change settings of an existing queue; arguments left null keep their value. Returns the new
settings. Validated as a whole: an invalid value changes nothing. Applies to deliveries and
failures from now on (jobs already waiting keep the delay they were given). handler => ''
removes the queue''s SQL handler (and its pg_cron job). concurrency: a limit on jobs in
flight (0 pauses the queue), null removes the limit, omitted keeps it. payload_schema: a JSON
Schema every enqueued payload must satisfy (needs PL/Python support or pg_jsonschema; the
JSON null removes it). handler => ''schema.fn'': a function taking one jsonb that the caller
may execute, bound by identity now; name it again to bind it anew once it was re-created (or
after a dump and restore). Every change is recorded in the audit view (a call that changes
nothing writes nothing).';

-- ======================================================================
-- sql/102_drop_queue.sql
-- ======================================================================
-- 102_drop_queue.sql: drop_queue, remove a queue, its dead letters and settings.

create or replace function pgmq_jobs.drop_queue(queue text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    perform pg_advisory_xact_lock(hashtext('pgmq_jobs.queue:' || queue));
    delete from pgmq_jobs.queue_settings as qs where qs.queue = drop_queue.queue;
    if not found then
        -- Dropped concurrently by another session while we waited for the lock.
        return false;
    end if;
    perform pgmq_jobs._cron_unschedule('pgmq_jobs_process_' || queue);
    -- Schedules that enqueue into it would fail every time from now on.
    perform pgmq_jobs.unschedule(ss.name)
    from pgmq_jobs.schedule_settings as ss
    where ss.queue = drop_queue.queue;
    perform pgmq.drop_queue(queue);
    perform pgmq.drop_queue(queue || '_dlq');
    perform pgmq_jobs._sync_partman_job();
    delete from pgmq_jobs.dedupe_keys as k where k.queue = drop_queue.queue;
    delete from pgmq_jobs.alert_thresholds as t where t.queue = drop_queue.queue;
    perform pgmq_jobs._audit(queue, 'drop_queue', '{}');
    return true;
end
$$;

comment on function pgmq_jobs.drop_queue(text) is
'Drop a queue with all its jobs, archive and dead letters, its cron schedules and its SQL
handler''s pg_cron job. Unknown queue: an error.';

-- ======================================================================
-- sql/103_queues.sql
-- ======================================================================
-- 103_queues.sql: view queues, every queue with its settings.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.queues as
select
    qs.queue,
    qs.queue operator(pg_catalog.||) '_dlq' as dead_letter_queue,
    qs.max_attempts,
    qs.visibility_timeout,
    qs.retry_base,
    qs.retry_max,
    qs.retry_factor,
    qs.jitter,
    qs.keep_completed,
    case when qs.keep_completed operator(pg_catalog.=) interval '0' then 'delete' else 'archive' end as on_complete,
    qs.max_payload_bytes,
    qs.unlogged,
    qs.notify,
    qs.handler,
    qs.dead_letter_retention,
    qs.concurrency,
    qs.partitioned,
    qs.partition_interval,
    qs.retention_interval,
    qs.payload_schema,
    qs.created_at,
    qs.updated_at
from pgmq_jobs.queue_settings as qs;
-- noqa: enable=LT01

comment on view pgmq_jobs.queues is
'Every pgmq-jobs queue with its retry policy and limits';

-- ======================================================================
-- sql/110_enqueue.sql
-- ======================================================================
-- 110_enqueue.sql: enqueue, add one job in the caller's transaction, with
-- optional unique key (dedupe), ordered group, priority and trace context.

-- A producer's W3C trace context (issue 20, item 10): a JSON object with
-- traceparent and optionally tracestate and baggage, strings, as
-- OpenTelemetry's propagators write them into a carrier. enqueue and
-- enqueue_batch merge it into the job's headers (which are then a carrier the
-- worker's propagator reads). Anything else is refused, naming what is wrong.
create or replace function pgmq_jobs._check_trace_context(trace_context jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    k text;
    v jsonb;
    limit_bytes integer;
begin
    if trace_context is null then
        return;
    end if;
    if jsonb_typeof(trace_context) <> 'object' or not trace_context ? 'traceparent' then
        raise exception 'trace_context must be a JSON object with a traceparent (W3C trace context), got %',
            left(trace_context::text, 200)
            using errcode = '22023';
    end if;
    for k, v in select e.key, e.value from jsonb_each(trace_context) as e loop
        if k not in ('traceparent', 'tracestate', 'baggage') then
            raise exception 'trace_context may hold traceparent, tracestate and baggage only, not %',
                quote_literal(left(k, 100))
                using errcode = '22023';
        end if;
        limit_bytes := case when k = 'baggage' then 8192 else 512 end;
        if jsonb_typeof(v) <> 'string' or octet_length(v #>> '{}') > limit_bytes then
            raise exception 'trace_context.% must be a string of at most % bytes', k, limit_bytes
                using errcode = '22023';
        end if;
    end loop;
end
$$;

create or replace function pgmq_jobs.enqueue(
    queue text,
    payload jsonb,
    delay interval default interval '0',
    run_at timestamptz default null,
    max_attempts integer default null,
    dedupe_key text default null,
    dedupe_window interval default null,
    group_key text default null,
    priority integer default 0,
    trace_context jsonb default null
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings;
    visible_at timestamptz;
    headers jsonb;
    job_id bigint;
    violated text;
    -- The insert PGMQ's send makes, without send's own layers of calls: this
    -- is the hot path of every producer.
    insert_job text := format(
        'insert into pgmq.%I (vt, message, headers) values ($1, $2, $3) returning msg_id',
        'q_' || queue
    );
begin
    -- The settings row read here, not through _settings: one call fewer on
    -- the hot path; _settings raises the clear error for an unknown queue.
    select * into s from pgmq_jobs.queue_settings as qs where qs.queue = enqueue.queue;
    if not found then
        s := pgmq_jobs._settings(queue);
    end if;
    -- Likewise _check_payload only runs to name what is wrong.
    if payload is null or jsonb_typeof(payload) <> 'object'
        or octet_length(payload::text) > s.max_payload_bytes then
        perform pgmq_jobs._check_payload(payload, s.max_payload_bytes);
    end if;
    if s.payload_schema is not null then
        perform pgmq_jobs._check_payload_schema(s.payload_schema, payload);
    end if;
    if run_at is not null and coalesce(delay, interval '0') <> interval '0' then
        raise exception 'give either delay or run_at, not both' using errcode = '22023';
    end if;
    if run_at is not null then
        if not isfinite(run_at) then
            raise exception 'run_at must be a finite time, got %', run_at using errcode = '22023';
        end if;
        -- A time in the past means now: it must not jump ahead of ready jobs.
        visible_at := greatest(run_at, clock_timestamp());
    elsif delay is null or delay = interval '0' then
        visible_at := clock_timestamp();
    else
        perform pgmq_jobs._check_interval('delay', delay, interval '0', interval '3650 days');
        visible_at := clock_timestamp() + delay;
    end if;
    if max_attempts is not null or dedupe_key is not null or dedupe_window is not null
        or group_key is not null or priority is distinct from 0 or trace_context is not null then
        perform pgmq_jobs._check_priority(priority);
        perform pgmq_jobs._check_trace_context(trace_context);
        if priority <> 0 and not s.prioritized then
            perform pgmq_jobs._mark_prioritized(queue);
        end if;
        if max_attempts is not null and (max_attempts < 1 or max_attempts > 1000) then
            raise exception 'max_attempts must be between 1 and 1000, got %', max_attempts
                using errcode = '22023';
        end if;
        if dedupe_key is not null and (dedupe_key = '' or length(dedupe_key) > 512) then
            raise exception 'dedupe_key must be 1 to 512 characters' using errcode = '22023';
        end if;
        if dedupe_window is not null then
            if dedupe_key is null then
                raise exception 'dedupe_window needs a dedupe_key' using errcode = '22023';
            end if;
            perform pgmq_jobs._check_interval(
                'dedupe_window', dedupe_window, interval '0', interval '3650 days', true
            );
        end if;
        if group_key is not null and (group_key = '' or length(group_key) > 512) then
            raise exception 'group_key must be 1 to 512 characters' using errcode = '22023';
        end if;
    end if;

    -- With a window: a job enqueued with this key within the window wins,
    -- whatever became of it. The advisory lock makes concurrent producers of
    -- one key take turns; each then sees the others' committed key.
    if dedupe_window is not null then
        perform pg_advisory_xact_lock(hashtext('pgmq_jobs.dedupe:' || queue), hashtext(dedupe_key));
        select k.job_id into job_id
        from pgmq_jobs.dedupe_keys as k
        where k.queue = enqueue.queue and k.dedupe_key = enqueue.dedupe_key
            and k.created_at > clock_timestamp() - dedupe_window;
        if job_id is not null then
            return job_id;
        end if;
    end if;

    -- Per-job options live in PGMQ's headers; a plain job has none.
    if max_attempts is not null or dedupe_key is not null or group_key is not null
        or priority <> 0 or trace_context is not null then
        -- The trace context's keys first: they cannot replace ours.
        headers := coalesce(trace_context, '{}') || jsonb_strip_nulls(jsonb_build_object(
            'max_attempts', max_attempts,
            'dedupe_key', case when dedupe_window is null then dedupe_key end,
            'group_key', group_key,
            -- Priority 0 is the absence of the key (the index reads it so).
            'priority', nullif(priority, 0)
        ));
        if headers = '{}' then
            headers := null;
        end if;
    end if;

    -- A group's later jobs wait, parked, behind the job in front of them.
    if group_key is not null then
        perform pgmq_jobs._group_lock(queue, group_key);
        if pgmq_jobs._group_busy(queue, group_key) then
            headers := headers || jsonb_build_object('run_at', visible_at);
            visible_at := 'infinity';
        end if;
    end if;

    if dedupe_key is not null and dedupe_window is null then
        -- Without a window: one unfinished job per key. Producers of a key take
        -- turns on an advisory lock (until commit), so each finds the job an
        -- earlier one committed; the queue's unique index on headers.dedupe_key
        -- (plain queues) also stops a producer whose snapshot is older
        -- (repeatable read), which then gets a serialization failure to retry.
        perform pg_advisory_xact_lock(hashtext('pgmq_jobs.dedupe:' || queue), hashtext(dedupe_key));
        execute format(
            $sql$
            select q.msg_id from pgmq.%I as q
            where (q.headers ->> 'dedupe_key') = $1 and q.headers ? 'dedupe_key'
            $sql$,
            'q_' || queue
        ) into job_id using dedupe_key;
        if job_id is not null then
            return job_id;
        end if;
        for attempt in 1..3 loop
            begin
                execute insert_job into job_id using visible_at, payload, headers;
                exit;
            exception when unique_violation then
                get stacked diagnostics violated = constraint_name;
                if violated is distinct from 'q_' || queue || '_dedupe' then
                    raise;
                end if;
                execute format(
                    $sql$
                    select q.msg_id from pgmq.%I as q
                    where (q.headers ->> 'dedupe_key') = $1 and q.headers ? 'dedupe_key'
                    $sql$,
                    'q_' || queue
                ) into job_id using dedupe_key;
                if job_id is not null then
                    return job_id;
                end if;
                -- That job finished in between: its key is free again; retry.
            end;
        end loop;
        if job_id is null then
            raise exception 'could not enqueue with dedupe_key %: its job kept changing', quote_literal(dedupe_key)
                using errcode = '40001';
        end if;
    else
        execute insert_job into job_id using visible_at, payload, headers;
    end if;

    if dedupe_window is not null then
        insert into pgmq_jobs.dedupe_keys as k (queue, dedupe_key, job_id, created_at, keep_until)
        values (queue, dedupe_key, job_id, clock_timestamp(), clock_timestamp() + dedupe_window)
        on conflict on constraint dedupe_keys_pkey do update set
            job_id = excluded.job_id,
            created_at = excluded.created_at,
            keep_until = excluded.keep_until;
    end if;
    -- Counted for queue_stats.enqueued_total, in the caller's transaction: a
    -- rolled-back enqueue is never counted (a dedupe hit returned above).
    insert into pgmq_jobs.outcome_log (queue, enqueued) values (queue, 1);
    -- _wake's test inline, a call fewer: most enqueues find no worker waiting.
    if visible_at <= clock_timestamp() and s.notify
        and exists (select from pgmq_jobs.waiting_workers as w where w.queue = enqueue.queue) then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return job_id;
end
$$;

comment on function pgmq_jobs.enqueue(
    text, jsonb, interval, timestamptz, integer, text, interval, text, integer, jsonb
) is
'Enqueue one job and return its id. Transactional with the caller: rolled back, it never
existed. payload must be a JSON object within the queue''s size limit. delay (>= 0) or
run_at (not both; a run_at in the past means now) make it visible later; max_attempts
overrides the queue''s for this job. dedupe_key: while an earlier job of the queue with that
key is unfinished (no dedupe_window), or was enqueued within dedupe_window, return its id and
enqueue nothing; race-free under concurrent producers. group_key: jobs sharing it are
delivered one at a time in enqueue order (a dead-lettered job releases the group); other
keys run in parallel. priority (-32768..32767, default 0): among ready jobs, claim takes the
highest priority first, then the oldest visible. trace_context: the producer''s W3C trace
context ({"traceparent": ..., "tracestate": ..., "baggage": ...}, strings), kept in the job''s
headers so that the worker''s span continues the producer''s trace.';

-- ======================================================================
-- sql/111_enqueue_batch.sql
-- ======================================================================
-- 111_enqueue_batch.sql: enqueue_batch, add many jobs in one statement.

create or replace function pgmq_jobs.enqueue_batch(
    queue text,
    payloads jsonb[],
    delay interval default interval '0',
    max_attempts integer default null,
    dedupe_keys text[] default null,
    dedupe_window interval default null,
    group_keys text[] default null,
    priorities integer[] default null,
    trace_context jsonb default null
)
returns setof bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    bad record;
begin
    if payloads is null then
        raise exception 'payloads must be an array of JSON objects, got null'
            using errcode = '22004';
    end if;
    if array_ndims(payloads) > 1 then
        raise exception 'payloads must be a one-dimensional array' using errcode = '22023';
    end if;
    if cardinality(payloads) = 0 then
        return;
    end if;
    if cardinality(payloads) > 100000 then
        raise exception 'at most 100000 payloads per batch, got %', cardinality(payloads)
            using errcode = '54000';
    end if;
    -- Find the first offending element so that the error can name it.
    select p.item, p.n into bad
    from unnest(payloads) with ordinality as p (item, n)
    where p.item is null
        or jsonb_typeof(p.item) <> 'object'
        or octet_length(p.item::text) > s.max_payload_bytes
    order by p.n
    limit 1;
    if found then
        perform pgmq_jobs._check_payload(bad.item, s.max_payload_bytes,
            format('payloads[%s]', bad.n));
    end if;
    if s.payload_schema is not null then
        perform pgmq_jobs._check_payload_schema(s.payload_schema, p.item, format('payloads[%s]', p.n))
        from unnest(payloads) with ordinality as p (item, n);
    end if;
    perform pgmq_jobs._check_interval('delay', coalesce(delay, interval '0'),
        interval '0', interval '3650 days');
    if max_attempts is not null and (max_attempts < 1 or max_attempts > 1000) then
        raise exception 'max_attempts must be between 1 and 1000, got %', max_attempts
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_trace_context(trace_context);
    if priorities is not null then
        if array_ndims(priorities) > 1 or array_lower(priorities, 1) <> 1
            or cardinality(priorities) <> cardinality(payloads) then
            raise exception 'priorities must be a one-dimensional array indexed from 1 with one element per payload (% payloads)',
                cardinality(payloads)
                using errcode = '22023';
        end if;
        perform pgmq_jobs._check_priority(p, format('priorities[%s]', n))
        from unnest(priorities) with ordinality as t (p, n)
        where p is null or p not between -32768 and 32767;
        if not s.prioritized and 0 <> any(priorities) then
            perform pgmq_jobs._mark_prioritized(queue);
        end if;
    end if;
    if dedupe_keys is not null or group_keys is not null then
        -- Keys are matched to payloads by position: a 2-D array or one not
        -- starting at 1 would pair them wrongly (and let duplicates through).
        if array_ndims(dedupe_keys) > 1 or array_ndims(group_keys) > 1
            or array_lower(dedupe_keys, 1) <> 1 or array_lower(group_keys, 1) <> 1 then
            raise exception 'dedupe_keys and group_keys must be one-dimensional arrays indexed from 1'
                using errcode = '22023';
        end if;
        -- Per-item keys: each job goes through enqueue's dedupe and group rules,
        -- in order, in this one transaction (a duplicate returns the earlier id).
        if cardinality(coalesce(dedupe_keys, payloads::text[])) <> cardinality(payloads)
            or cardinality(coalesce(group_keys, payloads::text[])) <> cardinality(payloads) then
            raise exception 'dedupe_keys and group_keys must have one element per payload (% payloads)',
                cardinality(payloads)
                using errcode = '22023';
        end if;
        return query
        select pgmq_jobs.enqueue(
            queue, p.item, delay, null, max_attempts,
            dedupe_keys[p.n], case when dedupe_keys[p.n] is not null then dedupe_window end,
            group_keys[p.n], coalesce(priorities[p.n], 0), trace_context
        )
        from unnest(payloads) with ordinality as p (item, n)
        order by p.n;
        return;
    end if;
    if dedupe_window is not null then
        raise exception 'dedupe_window needs dedupe_keys' using errcode = '22023';
    end if;
    if coalesce(delay, interval '0') = interval '0' then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    -- Counted for queue_stats.enqueued_total, in this transaction: a batch
    -- rolled back is never counted (per-key batches count in enqueue).
    insert into pgmq_jobs.outcome_log (queue, enqueued) values (queue, cardinality(payloads));
    -- The insert PGMQ's send_batch makes, without its layers of calls (as in
    -- enqueue); ids are drawn in input order, and returned in it.
    if priorities is null then
        return query execute format(
            $sql$
            insert into pgmq.%I (vt, message, headers)
            select $1, p.item, $2 from unnest($3) with ordinality as p (item, n)
            order by p.n
            returning msg_id
            $sql$,
            'q_' || queue
        ) using clock_timestamp() + coalesce(delay, interval '0'),
            case when max_attempts is not null or trace_context is not null then
                coalesce(trace_context, '{}') || jsonb_strip_nulls(jsonb_build_object('max_attempts', max_attempts))
            end,
            payloads;
        return;
    end if;
    -- Per-job priorities: each job's headers get its own (0: no key).
    return query execute format(
        $sql$
        insert into pgmq.%I (vt, message, headers)
        select
            $1, p.item,
            nullif(coalesce($5, '{}') || jsonb_strip_nulls(jsonb_build_object(
                'max_attempts', $2, 'priority', nullif($4[p.n], 0)
            )), '{}')
        from unnest($3) with ordinality as p (item, n)
        order by p.n
        returning msg_id
        $sql$,
        'q_' || queue
    ) using clock_timestamp() + coalesce(delay, interval '0'), max_attempts, payloads, priorities,
        trace_context;
end
$$;

comment on function pgmq_jobs.enqueue_batch(
    text, jsonb[], interval, integer, text[], interval, text[], integer[], jsonb
) is
'Enqueue many jobs in one statement and return their ids in input order. Every element must
be a JSON object within the size limit, or nothing is enqueued and the error names the
first bad element (payloads[n], 1-based). An empty array enqueues nothing. dedupe_keys and
group_keys (one element per payload, nulls allowed) apply enqueue''s unique-job and ordered
group rules per item; a duplicate yields the earlier job''s id in its place. priorities (one
element per payload, -32768..32767) give each job its priority (as enqueue''s priority).
trace_context: the producer''s W3C trace context, kept in every job''s headers (as enqueue''s).';

-- ======================================================================
-- sql/120_claim.sql
-- ======================================================================
-- 120_claim.sql: claim, take ready jobs with a visibility timeout.
--
-- An index walk over the queue's priority index, one priority at a time
-- (a handful of probes), each by vt: only rows with vt <= now are
-- visited, however many delayed or retry-scheduled jobs wait behind them
-- (PGMQ's read orders by msg_id instead and scans those). "now" is a parameter,
-- taken from the clock before each pass: compared with clock_timestamp()
-- itself (volatile, so never an index condition) the walk would read every
-- waiting job of a queue with none ready. Deliveries whose
-- attempts are used up (their worker died on the last one) are routed to the
-- dead-letter queue in the same statement instead of being returned.

create or replace function pgmq_jobs.claim(
    queue text,
    qty integer default 1,
    visibility_timeout interval default null,
    worker text default null
)
returns setof pgmq_jobs.claimed_job
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    vt interval := coalesce(visibility_timeout, s.visibility_timeout);
    wanted integer := qty;
    exhausted_ids bigint[];
    exhausted_attempts integer[];
    r record;
    job pgmq_jobs.claimed_job;
    stmt text;
    prioritized boolean := false;
    next_level text;
    level smallint;
    rounds integer := 0;
begin
    if qty is null or qty < 1 or qty > 1000 then
        raise exception 'qty must be between 1 and 1000, got %', coalesce(qty::text, 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_interval('visibility_timeout', vt, interval '0', interval '1 day', true);
    if length(worker) > 200 then
        raise exception 'worker must be at most 200 characters, got %', length(worker)
            using errcode = '22023';
    end if;
    -- A concurrency limit: claims of this queue take turns (advisory lock until
    -- commit) and count the open deliveries through the small index of
    -- delivered jobs, so no two claims together exceed the limit.
    if s.concurrency is not null then
        perform pg_advisory_xact_lock(hashtext('pgmq_jobs.concurrency'), hashtext(queue));
        wanted := least(wanted, s.concurrency - pgmq_jobs._in_flight(queue));
        if wanted <= 0 then
            return;
        end if;
    end if;

    -- One statement claims the ready jobs: the highest priority first, within a
    -- priority the oldest by visibility time; locked by the subquery (skipping
    -- those another claim holds), updated by msg_id. The priorities present
    -- are found one at a time, highest first, by a probe of the priority
    -- index each (the loop below), and each priority's ready jobs by a walk
    -- of that index that stops at the first job not visible yet, so delayed
    -- and retrying jobs at any priority are never read.
    -- A job past its attempts (its worker died on the last one) is not
    -- delivered again: it keeps its vt and headers, and its read_ct goes one
    -- past its attempts only to tell it apart in the result; it is put back
    -- and routed to the dead-letter queue right after. One UPDATE, not a CTE
    -- joined back to the queue: planned on every call (the table name varies),
    -- it costs half as much to plan.
    -- A queue that never had a job of another priority than 0 (most queues) is
    -- claimed by the plain walk of the vt index: the walk over the priorities
    -- costs a probe per priority more.
    prioritized := s.priority_index and s.prioritized;
    stmt := format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = case
                when q.read_ct < coalesce((q.headers ->> 'max_attempts')::integer, $3)
                    then $5 + $2
                else q.vt
            end,
            read_ct = q.read_ct + 1,
            headers = case
                when q.read_ct >= coalesce((q.headers ->> 'max_attempts')::integer, $3) then q.headers
                -- First deliveries (the common case) stay inline; a redelivery
                -- first records the delivery that timed out.
                when q.read_ct = 0 and $4::text is null then q.headers
                when q.read_ct = 0 then coalesce(q.headers, '{}') || jsonb_build_object('worker', $4::text)
                when $4::text is null then pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt) - 'worker'
                else coalesce(pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt), '{}')
                    || jsonb_build_object('worker', $4::text)
            end
        where q.msg_id = any(array(%2$s))
        returning
            q.msg_id as job_id,
            q.read_ct as attempt,
            coalesce((q.headers ->> 'max_attempts')::integer, $3) as max_attempts,
            q.message as payload,
            q.enqueued_at,
            q.vt as visible_until
        $sql$,
        'q_' || queue,
        -- One priority at a time ($6, highest first: the loop below finds the
        -- next with one probe of the priority index), or by vt alone: no job of
        -- another priority than 0, or the queue's priority index is not built
        -- yet (an upgraded queue, for the moments pgmq-jobs install builds it
        -- concurrently). Each is a walk that stops at the first job not
        -- visible yet, and simple to plan.
        case when prioritized then format(
            $sql$
            select r.msg_id
            from pgmq.%1$I as r
            -- "= any(array[...])" where "=" would do: with an equality to a
            -- constant the planner takes the order by vt as the whole order and
            -- may filter the vt index through every ready job of the priorities
            -- above; an array comparison keeps it on this index, whose walk both
            -- conditions bound (and stop at the first job not visible yet).
            where coalesce((r.headers ->> 'priority')::smallint, 0::smallint) = any(array[$6::smallint])
                and r.vt <= $5
            order by coalesce((r.headers ->> 'priority')::smallint, 0::smallint), r.vt
            limit $1
            for update skip locked
            $sql$,
            'q_' || queue
        ) else format(
            $sql$
            select r.msg_id
            from pgmq.%1$I as r
            where r.vt <= $5
            order by r.vt
            limit $1
            for update skip locked
            $sql$,
            'q_' || queue
        ) end
    );
    if prioritized then
        next_level := format(
            $sql$
            select max(coalesce((l.headers ->> 'priority')::smallint, 0::smallint))
            from pgmq.%1$I as l
            where coalesce((l.headers ->> 'priority')::smallint, 0::smallint) < $1
            $sql$,
            'q_' || queue
        );
        -- The highest priority present: the next one below 32768, above any.
        execute next_level into level using 32768;
        if level is null then
            return;
        end if;
    end if;

    -- Routed dead letters free their slot: look again for ready jobs (at the
    -- same priority), a bounded number of times, so a caller is not starved by
    -- a run of exhausted jobs. A priority without enough ready jobs hands on to
    -- the next one down.
    loop
        exhausted_ids := '{}';
        exhausted_attempts := '{}';
        for r in execute stmt using wanted, vt, s.max_attempts, worker, clock_timestamp(), level loop
            if r.attempt > r.max_attempts then
                exhausted_ids := exhausted_ids || r.job_id;
                exhausted_attempts := exhausted_attempts || (r.attempt - 1);
            else
                wanted := wanted - 1;
                job := (r.job_id, r.attempt, r.max_attempts, r.payload, r.enqueued_at, r.visible_until);
                return next job;
            end if;
        end loop;
        if cardinality(exhausted_ids) > 0 then
            execute format(
                'update pgmq.%I as q set read_ct = q.read_ct - 1 where q.msg_id = any($1)', 'q_' || queue
            ) using exhausted_ids;
            perform pgmq_jobs._route_expired(queue, exhausted_ids, exhausted_attempts);
            rounds := rounds + 1;
            exit when wanted = 0 or rounds >= 10;
            continue;
        end if;
        exit when wanted = 0 or not prioritized;
        execute next_level into level using level;
        exit when level is null;
    end loop;
end
$$;

comment on function pgmq_jobs.claim(text, integer, interval, text) is
'Claim up to qty (1..1000) ready jobs, hiding them for visibility_timeout (default: the
queue''s). attempt is the delivery''s fencing token for complete, fail and extend. A job
whose attempts are used up (its worker died on the last one) goes to the dead-letter queue
with reason expired instead of being returned. worker names the claimer in the job''s
error history. Which jobs: the ready ones of the highest priority first, and within a
priority the oldest by visibility time (the rows come back in no set order). With a concurrency limit it returns fewer jobs (or none) so that the queue never has more in flight.';

-- ======================================================================
-- sql/121_complete.sql
-- ======================================================================
-- 121_complete.sql: complete, acknowledge finished deliveries in one statement.

drop function if exists pgmq_jobs.complete(text, bigint[], integer[]);

create or replace function pgmq_jobs.complete(
    queue text,
    job_ids bigint[],
    attempts integer[],
    durations_ms double precision[] default null
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    done integer;
    groups text[];
    timed integer := 0;
    total_ms double precision := 0;
    buckets integer[];
begin
    perform pgmq_jobs._check_deliveries(job_ids, attempts);
    if durations_ms is not null and cardinality(durations_ms) <> cardinality(job_ids) then
        raise exception 'durations_ms must have one element per job, got % for % jobs',
            cardinality(durations_ms), cardinality(job_ids)
            using errcode = '22023';
    end if;
    if cardinality(job_ids) = 0 then
        return 0;
    end if;

    -- The fence: a row is finished only while its read_ct is the attempt the
    -- worker was given and that delivery has not failed. A stale pair matches
    -- nothing and is not counted. Completions are archived, or deleted when
    -- the queue keeps none.
    execute format(
        $sql$
        with finished as (
            delete from pgmq.%1$I as q
            using unnest($1, $2) as t (job_id, attempt)
            where q.msg_id = t.job_id and q.read_ct = t.attempt and %3$s
            returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        ),
        archived as (
            insert into pgmq.%2$I (msg_id, read_ct, enqueued_at, vt, message, headers)
            select f.msg_id, f.read_ct, f.enqueued_at, f.vt, f.message, f.headers
            from finished as f
            where $3
        )
        select count(*), array_agg(f.headers ->> 'group_key') filter (where f.headers ? 'group_key')
        from finished as f
        $sql$,
        'q_' || queue, 'a_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into done, groups using job_ids, attempts, s.keep_completed > interval '0';

    if done > 0 then
        -- Processing times, when the worker reports them, as a sum and a
        -- histogram of power-of-two millisecond buckets (for averages and p95).
        if durations_ms is not null then
            select h.n, h.total, h.buckets into timed, total_ms, buckets
            from pgmq_jobs._duration_histogram(durations_ms) as h;
        end if;
        insert into pgmq_jobs.outcome_log (queue, completed, duration_count, duration_ms_sum, duration_buckets)
        values (queue, done, timed, total_ms, buckets);
    end if;
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;
    return done;
end
$$;

comment on function pgmq_jobs.complete(text, bigint[], integer[], double precision[]) is
'Complete jobs: job_ids[i] whose current delivery is attempts[i] are archived (or deleted when
the queue keeps no completions). Returns how many were completed; a stale pair (the job was
redelivered, failed, finished or dead-lettered since) changes nothing and is not counted.
durations_ms (optional, one per job) are the handlers'' processing times, recorded for
queue_stats.';

-- ======================================================================
-- sql/122_fail.sql
-- ======================================================================
-- 122_fail.sql: fail, report a failed delivery: retry later or dead-letter
-- (one delivery of fail_batch; the work is in _fail_deliveries).

create or replace function pgmq_jobs.fail(
    queue text,
    job_id bigint,
    attempt integer,
    error text,
    retry_after interval default null,
    permanent boolean default false
)
returns pgmq_jobs.fail_result
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    result pgmq_jobs.fail_result;
begin
    perform pgmq_jobs._check_delivery(job_id, attempt);
    if permanent is null then
        raise exception 'permanent must not be null' using errcode = '22004';
    end if;
    if retry_after is not null then
        perform pgmq_jobs._check_interval('retry_after', retry_after, interval '0', interval '3650 days');
    end if;
    select f.outcome, f.attempt, f.next_attempt_at into result
    from pgmq_jobs._fail_deliveries(
        queue, s, array[job_id], array[attempt], array[error],
        array[retry_after], array[permanent]
    ) as f;
    return result;
end
$$;

comment on function pgmq_jobs.fail(text, bigint, integer, text, interval, boolean) is
'Report that delivery attempt of job_id failed with error. outcome retry: visible again at
next_attempt_at, after min(retry_max, retry_base * retry_factor^(attempt-1)) with the queue''s
jitter, or after retry_after when given. outcome dead: permanent, or attempt reached
max_attempts; the job is in <queue>_dlq with every error. outcome stale: the delivery was
superseded and nothing changed. A job_id the queue never issued is an error.';

-- ======================================================================
-- sql/123_extend.sql
-- ======================================================================
-- 123_extend.sql: extend, the heartbeat of a long job.

create or replace function pgmq_jobs.extend(queue text, job_id bigint, attempt integer, by interval)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    visible_until timestamptz;
begin
    perform pgmq_jobs._settings(queue);
    perform pgmq_jobs._check_delivery(job_id, attempt);
    perform pgmq_jobs._check_interval('by', extend.by, interval '0', interval '1 day', true);
    execute format(
        $sql$
        update pgmq.%I as q
        set vt = clock_timestamp() + $3
        where q.msg_id = $1 and q.read_ct = $2
            and %2$s
        returning q.vt
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into visible_until using job_id, attempt, extend.by;
    if visible_until is null then
        perform pgmq_jobs._check_job_issued(queue, job_id);
    end if;
    return visible_until;
end
$$;

comment on function pgmq_jobs.extend(text, bigint, integer, interval) is
'Keep a delivery hidden for another "by" from now (heartbeat for long jobs). Returns the new
visible-until time, or null when the delivery is stale (the job was redelivered, finished or
dead-lettered). A job_id the queue never issued is an error.';

-- ======================================================================
-- sql/124_release.sql
-- ======================================================================
-- 124_release.sql: release, hand claimed but unstarted deliveries back.
--
-- A worker that prefetched jobs and is told to stop gives back the ones no
-- handler has started: they become visible at once and the claim is undone
-- (read_ct goes back), so the next worker gets the same attempt number and
-- the job's attempts are not used up by a shutdown. A released job keeps its
-- place in line: its visibility time becomes its enqueue time, so claims
-- (oldest visibility time first) take it before jobs enqueued after it.

create or replace function pgmq_jobs.release(queue text, job_ids bigint[], attempts integer[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    released integer;
begin
    perform pgmq_jobs._check_deliveries(job_ids, attempts);
    if cardinality(job_ids) = 0 then
        return 0;
    end if;
    -- The same fence as complete: only the open delivery the worker was given.
    execute format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = least(q.enqueued_at, clock_timestamp()),
            read_ct = q.read_ct - 1,
            headers = q.headers - 'worker'
        from unnest($1, $2) as t (job_id, attempt)
        where q.msg_id = t.job_id and q.read_ct = t.attempt and %2$s
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) using job_ids, attempts;
    get diagnostics released = row_count;
    if released > 0 then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return released;
end
$$;

comment on function pgmq_jobs.release(text, bigint[], integer[]) is
'Give back deliveries that were claimed but not started (a stopping worker''s prefetched
jobs): job_ids[i] whose current delivery is attempts[i] become visible now, in their place
in line (as of their enqueue time), and the claim is undone, so the attempt is not used up.
Returns how many were released; a stale pair changes nothing and is not counted.';

-- ======================================================================
-- sql/125_fail_batch.sql
-- ======================================================================
-- 125_fail_batch.sql: fail_batch, report many failed deliveries of a queue in
-- one statement (a worker's burst of failures in one round trip).

create or replace function pgmq_jobs.fail_batch(
    queue text,
    job_ids bigint[],
    attempts integer[],
    errors text[],
    retry_after interval[] default null,
    permanent boolean[] default null
)
returns table (job_id bigint, outcome text, attempt integer, next_attempt_at timestamptz)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    n integer;
    delay interval;
begin
    perform pgmq_jobs._check_deliveries(job_ids, attempts);
    n := cardinality(job_ids);
    if errors is null or cardinality(errors) <> n then
        raise exception 'errors must have one element per job, got % for % jobs',
            coalesce(cardinality(errors)::text, 'null'), n
            using errcode = '22023';
    end if;
    if retry_after is not null then
        if cardinality(retry_after) <> n then
            raise exception 'retry_after must have one element per job (null: the backoff), got % for % jobs',
                cardinality(retry_after), n
                using errcode = '22023';
        end if;
        foreach delay in array retry_after loop
            if delay is not null then
                perform pgmq_jobs._check_interval('retry_after', delay, interval '0', interval '3650 days');
            end if;
        end loop;
    end if;
    if permanent is not null then
        if cardinality(permanent) <> n then
            raise exception 'permanent must have one element per job, got % for % jobs',
                cardinality(permanent), n
                using errcode = '22023';
        end if;
        if array_position(permanent, null) is not null then
            raise exception 'permanent must not contain nulls' using errcode = '22004';
        end if;
    end if;
    if (select count(distinct j.id) from unnest(job_ids) as j (id)) <> n then
        raise exception 'job_ids must not repeat a job' using errcode = '22023';
    end if;
    if n = 0 then
        return;
    end if;
    return query
    select f.job_id, f.outcome, f.attempt, f.next_attempt_at
    from pgmq_jobs._fail_deliveries(
        queue, s, job_ids, attempts, errors,
        coalesce(retry_after, array_fill(null::interval, array[n])),
        coalesce(permanent, array_fill(false, array[n]))
    ) as f;
end
$$;

comment on function pgmq_jobs.fail_batch(text, bigint[], integer[], text[], interval[], boolean[]) is
'fail for many deliveries of a queue in one statement: job_ids[i] at attempts[i] failed with
errors[i]; retry_after[i] (null: the queue''s backoff) and permanent[i] as in fail (both
arrays optional). One row per job, in the order given: outcome retry (next_attempt_at),
dead or stale, as fail reports it. A job_id the queue never issued, or one given twice, is an
error and nothing is applied.';

-- ======================================================================
-- sql/126_snooze.sql
-- ======================================================================
-- 126_snooze.sql: snooze, a handler's "not yet".
--
-- The worker ends its delivery and the job comes back after "by" without
-- using up an attempt: as release does, the claim is undone (read_ct goes
-- back by one, so the next delivery gets the same attempt number), but the
-- job becomes visible only at now + by, behind the jobs ready by then. Fenced
-- like extend: only the open delivery the worker was given, so a stale snooze
-- changes nothing and returns null; a second snooze of the same delivery is
-- stale too.

create or replace function pgmq_jobs.snooze(queue text, job_id bigint, attempt integer, by interval)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    visible_at timestamptz;
begin
    perform pgmq_jobs._check_delivery(job_id, attempt);
    perform pgmq_jobs._check_interval('by', snooze.by, interval '0', interval '3650 days');
    execute pg_catalog.format(
        $sql$
        update pgmq.%I as q
        set
            vt = clock_timestamp() + $3,
            read_ct = q.read_ct - 1,
            headers = q.headers - 'worker'
        where q.msg_id = $1 and q.read_ct = $2
            and %2$s
        returning q.vt
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into visible_at using job_id, attempt, snooze.by;
    if visible_at is null then
        perform pgmq_jobs._check_job_issued(queue, job_id);
    elsif snooze.by = interval '0' then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return visible_at;
end
$$;

comment on function pgmq_jobs.snooze(text, bigint, integer, interval) is
'End a delivery and bring the job back after "by" (0 to 3650 days) without using up an attempt:
the next delivery gets the same attempt number. Only the delivery the worker was given:
returns the time the job becomes visible again, or null when the delivery is stale (the job
was redelivered, snoozed, finished, cancelled or dead-lettered), which changes nothing. A job
of an ordered group stays its group''s head meanwhile. A job_id the queue never issued is an
error.';

-- ======================================================================
-- sql/127_trace_contexts.sql
-- ======================================================================
-- 127_trace_contexts.sql: trace_contexts, the producers' trace contexts of
-- claimed jobs (issue 20, item 10).
--
-- enqueue(..., trace_context) keeps the producer's W3C trace context
-- (traceparent, tracestate, baggage) in the job's PGMQ headers. claim's
-- result columns are pinned, so a worker that traces asks for the contexts
-- of a claimed batch in one more statement, and only when it traces: one
-- index lookup by msg_id per job id. Jobs without a trace context (or no
-- longer in the queue) give no row.

create or replace function pgmq_jobs.trace_contexts(queue text, job_ids bigint[])
returns table (job_id bigint, trace_context jsonb)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    if job_ids is null then
        raise exception 'job_ids must not be null' using errcode = '22004';
    end if;
    if cardinality(job_ids) > 1000 then
        raise exception 'at most 1000 job_ids at a time (as many as one claim returns), got %',
            cardinality(job_ids)
            using errcode = '22023';
    end if;
    return query execute pg_catalog.format(
        $sql$
        select
            q.msg_id,
            jsonb_strip_nulls(jsonb_build_object(
                'traceparent', q.headers -> 'traceparent',
                'tracestate', q.headers -> 'tracestate',
                'baggage', q.headers -> 'baggage'
            ))
        from pgmq.%I as q
        where q.msg_id = any($1)
            and q.headers ? 'traceparent'
        order by q.msg_id
        $sql$,
        'q_' || queue
    ) using job_ids;
end
$$;

comment on function pgmq_jobs.trace_contexts(text, bigint[]) is
'The producers'' W3C trace contexts ({"traceparent": ..., "tracestate": ..., "baggage": ...},
as enqueue''s trace_context kept them in the job headers) of up to 1000 jobs of a queue, one
row per job that carries one, by job id; jobs without one, or no longer in the queue, give no
row. A tracing worker calls it once per claimed batch to continue each job''s trace. An
unknown queue is an error.';

-- ======================================================================
-- sql/130_dead_letters.sql
-- ======================================================================
-- 130_dead_letters.sql: dead_letters, inspect a queue's dead-letter queue.

drop function if exists pgmq_jobs.dead_letters(text, integer);

create or replace function pgmq_jobs.dead_letters(
    queue text,
    lim integer default 100,
    dead_id bigint default null,
    error_text text default null,
    older_than interval default null,
    newer_than interval default null,
    newest_first boolean default false
)
returns setof pgmq_jobs.dead_letter
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    if lim is null or lim < 1 or lim > 100000 then
        raise exception 'lim must be between 1 and 100000, got %', coalesce(lim::text, 'null')
            using errcode = '22023';
    end if;
    if newest_first is null then
        raise exception 'newest_first must be true or false, not null'
            using errcode = '22023';
    end if;
    return query execute format(
        $sql$
        select
            d.msg_id,
            (d.message ->> 'job_id')::bigint,
            (d.message ->> 'original_job_id')::bigint,
            d.message -> 'payload',
            (d.message ->> 'attempts')::integer,
            d.message ->> 'reason',
            d.message -> 'errors',
            d.message #>> '{errors,-1,error}',
            (d.message ->> 'enqueued_at')::timestamptz,
            coalesce((d.message ->> 'died_at')::timestamptz, d.enqueued_at),
            coalesce((d.message ->> 'replays')::integer, 0)
        from pgmq.%I as d
        where ($2::bigint is null or d.msg_id = $2)
            and ($3::text is null or exists (
                select from jsonb_array_elements(d.message -> 'errors') as e
                where strpos(lower(e ->> 'error'), lower($3)) > 0
            ))
            and ($4::interval is null or d.vt < clock_timestamp() - $4)
            and ($5::interval is null or d.vt >= clock_timestamp() - $5)
        order by d.msg_id %s
        limit $1
        $sql$,
        'q_' || queue || '_dlq',
        case when newest_first then 'desc' else 'asc' end
    ) using lim, dead_id, error_text, older_than, newer_than;
end
$$;

comment on function pgmq_jobs.dead_letters(text, integer, bigint, text, interval, interval, boolean) is
'The oldest lim dead letters of a queue, oldest first (with newest_first => true the newest
lim, newest first; dead ids follow the order in which jobs died): dead_id (for replay), the
job id, payload, attempts, reason (exhausted, permanent or expired), every error with its time
and attempt, the first enqueue time and the time of death. Filters: one dead_id; error_text
(case-insensitive, in any recorded error); died more than older_than / less than newer_than
ago.';

-- ======================================================================
-- sql/131_replay.sql
-- ======================================================================
-- 131_replay.sql: replay, move dead letters back into their queue.

create or replace function pgmq_jobs.replay(
    queue text, dead_ids bigint[] default null, strict boolean default false
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    moved integer;
    groups text[];
    grouped_ids bigint[];
    revived_ids bigint[];
    missing bigint[];
    with_priority boolean;
    k text;
begin
    if array_position(dead_ids, null) is not null then
        raise exception 'dead_ids must not contain nulls' using errcode = '22004';
    end if;
    -- One statement: a dead letter leaves the DLQ exactly when its job is back.
    execute format(
        $sql$
        with revived as (
            delete from pgmq.%1$I as d
            where $1::bigint[] is null or d.msg_id = any($1)
            returning d.msg_id, d.message
        ),
        requeued as (
            insert into pgmq.%2$I (vt, message, headers)
            select
                clock_timestamp(),
                r.message -> 'payload',
                jsonb_strip_nulls(jsonb_build_object(
                    'original_job_id', r.message -> 'original_job_id',
                    'first_enqueued_at', r.message -> 'enqueued_at',
                    'replays', coalesce((r.message ->> 'replays')::integer, 0) + 1,
                    'max_attempts', r.message -> 'max_attempts',
                    'group_key', r.message -> 'group_key',
                    'priority', r.message -> 'priority'
                ))
            from revived as r
            order by r.msg_id
            returning msg_id, headers ->> 'group_key' as group_key
        )
        select count(*), array_agg(distinct q.group_key) filter (where q.group_key is not null),
            array_agg(q.msg_id) filter (where q.group_key is not null),
            (select array_agg(r.msg_id) from revived as r),
            (select coalesce(bool_or(r.message ? 'priority'), false) from revived as r)
        from requeued as q
        $sql$,
        'q_' || queue || '_dlq', 'q_' || queue
    ) into moved, groups, grouped_ids, revived_ids, with_priority using dead_ids;
    if with_priority and not s.prioritized then
        perform pgmq_jobs._mark_prioritized(queue);
    end if;
    -- strict: ids that were not dead letters (in the same statement's view, so no
    -- race) are an error that undoes the whole call, replayed jobs and audit row
    -- included. Otherwise they are ignored, as in 0.1.0.
    select array_agg(distinct m.id order by m.id) into missing
    from unnest(dead_ids) as m (id)
    where strict and m.id <> all(coalesce(revived_ids, '{}'));
    if missing is not null then
        raise exception 'not dead letters of queue %: %; nothing was replayed',
            queue,
            array_to_string(missing[1:10], ', ')
            || case when cardinality(missing) > 10
                then format(' and %s more', cardinality(missing) - 10) else '' end
            using errcode = '22023',
            hint = 'dead_letters(queue) lists the dead ids (a replayed letter leaves the dead-letter queue)';
    end if;
    -- A replayed job of an ordered group queues up behind the group's earlier jobs.
    foreach k in array coalesce(groups, '{}') loop
        perform pgmq_jobs._group_lock(queue, k);
        execute format(
            $sql$
            update pgmq.%1$I as q
            set headers = q.headers || jsonb_build_object('run_at', q.vt), vt = 'infinity'
            where q.msg_id = any($2) and (q.headers ->> 'group_key') = $1 and q.msg_id > (
                select min(h.msg_id) from pgmq.%1$I as h
                where (h.headers ->> 'group_key') = $1 and h.headers ? 'group_key'
            )
            $sql$,
            'q_' || queue
        ) using k, grouped_ids;
    end loop;
    if moved > 0 then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    perform pgmq_jobs._audit(queue, 'replay', jsonb_build_object('dead_ids', dead_ids, 'replayed', moved));
    return moved;
end
$$;

comment on function pgmq_jobs.replay(text, bigint[], boolean) is
'Put dead letters (dead_ids from dead_letters; null = all) back into their queue as new jobs
with a fresh attempt count. Returns how many were replayed; ids not in the dead-letter queue
are ignored, or with strict => true refused: the call then changes nothing (no job, no audit
row) and its error names them (the CLI replays strictly). The new
job remembers its original job id and first enqueue time, and keeps its priority and group (not
its dedupe key).';

-- ======================================================================
-- sql/132_purge_dead_letters.sql
-- ======================================================================
-- 132_purge_dead_letters.sql: purge_dead_letters, drop dead letters for good.

drop function if exists pgmq_jobs.purge_dead_letters(text, interval);

create or replace function pgmq_jobs.purge_dead_letters(
    queue text, older_than interval default null, dead_ids bigint[] default null
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    purged integer;
begin
    perform pgmq_jobs._settings(queue);
    if array_position(dead_ids, null) is not null then
        raise exception 'dead_ids must not contain nulls' using errcode = '22004';
    end if;
    if older_than is not null then
        perform pgmq_jobs._check_interval('older_than', older_than, interval '0', interval '3650 days');
    end if;
    execute format(
        $sql$
        delete from pgmq.%I as d
        where ($1::interval is null or d.enqueued_at < clock_timestamp() - $1)
            and ($2::bigint[] is null or d.msg_id = any($2))
        $sql$,
        'q_' || queue || '_dlq'
    ) using older_than, dead_ids;
    get diagnostics purged = row_count;
    perform pgmq_jobs._audit(queue, 'purge_dead_letters',
        jsonb_strip_nulls(jsonb_build_object('older_than', older_than, 'dead_ids', dead_ids))
        || jsonb_build_object('purged', purged));
    return purged;
end
$$;

comment on function pgmq_jobs.purge_dead_letters(text, interval, bigint[]) is
'Delete dead letters of a queue for good: all of them, those that died more than older_than
ago, and/or only the given dead_ids. Returns how many were deleted.';

-- ======================================================================
-- sql/133_failing_jobs.sql
-- ======================================================================
-- 133_failing_jobs.sql: failing_jobs, jobs of a queue that failed at least
-- once and are still alive (waiting to retry or being retried), with their
-- error history.

create or replace function pgmq_jobs.failing_jobs(queue text, lim integer default 100)
returns table (
    job_id bigint,
    attempts integer,
    max_attempts integer,
    payload jsonb,
    errors jsonb,
    last_error text,
    next_attempt_at timestamptz,
    enqueued_at timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
begin
    if lim is null or lim < 1 or lim > 10000 then
        raise exception 'lim must be between 1 and 10000, got %', coalesce(lim::text, 'null')
            using errcode = '22023';
    end if;
    -- Only delivered jobs can have failed: the partial index over read_ct > 0
    -- keeps this away from the waiting backlog.
    return query execute format(
        $sql$
        select
            q.msg_id, q.read_ct, coalesce((q.headers ->> 'max_attempts')::integer, $2),
            q.message, q.headers -> 'errors', q.headers #>> '{errors,-1,error}',
            q.vt, q.enqueued_at
        from pgmq.%I as q
        where q.read_ct > 0 and q.headers ? 'errors'
        order by q.vt desc
        limit $1
        $sql$,
        'q_' || queue
    ) using lim, s.max_attempts;
end
$$;

comment on function pgmq_jobs.failing_jobs(text, integer) is
'Jobs of a queue that failed (or timed out) at least once and are not dead yet: attempts so
far, payload, every error with its time, and when the next attempt may run (or, while being
retried, until when the current delivery is hidden). Newest first, at most lim.';

-- ======================================================================
-- sql/134_cancel.sql
-- ======================================================================
-- 134_cancel.sql: cancel, take jobs out of their queue for good.
--
-- One statement deletes the jobs from the queue table and records them in
-- pgmq_jobs.cancelled_jobs (not in the dead-letter queue): a job that is
-- waiting, delayed, retrying or parked, and one in flight too. An in-flight
-- job's worker then finds its delivery gone: complete counts 0, fail says
-- stale and extend returns null (the fence of every outcome call is the row
-- itself), which the worker turns into ctx.cancelled for a cooperative
-- handler. A concurrent claim that holds a row makes the delete wait and then
-- cancel the delivery it made. Dedupe keys: an unwindowed key lives on the
-- queue row, so it is free at once; a windowed key (pgmq_jobs.dedupe_keys)
-- stays until its window ends, as it does for a completed job.

create or replace function pgmq_jobs.cancel(queue text, job_ids bigint[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cancelled integer;
    groups text[];
begin
    perform pgmq_jobs._settings(queue);
    perform pgmq_jobs._check_job_ids(job_ids);
    execute pg_catalog.format(
        $sql$
        with gone as (
            delete from pgmq.%1$I as q
            where q.msg_id = any($1)
            returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        ),
        recorded as (
            insert into pgmq_jobs.cancelled_jobs as c (
                queue, job_id, payload, headers, attempt, enqueued_at, state, cancelled_at, cancelled_by
            )
            select
                $2, g.msg_id, g.message,
                -- A delivery that had timed out keeps that in its history, as its
                -- next claim would have recorded it.
                case when g.vt <= $3 then pgmq_jobs._timed_out(g.headers, g.read_ct, g.vt) else g.headers end,
                g.read_ct, g.enqueued_at, pgmq_jobs._job_state(g.vt, g.read_ct, g.headers, $3),
                clock_timestamp(), $4
            from gone as g
            on conflict on constraint cancelled_jobs_pkey do update set
                payload = excluded.payload,
                headers = excluded.headers,
                attempt = excluded.attempt,
                enqueued_at = excluded.enqueued_at,
                state = excluded.state,
                cancelled_at = excluded.cancelled_at,
                cancelled_by = excluded.cancelled_by
        )
        select count(*), array_agg(g.headers ->> 'group_key') filter (where g.headers ? 'group_key')
        from gone as g
        $sql$,
        'q_' || queue
    ) into cancelled, groups using job_ids, queue, clock_timestamp(), pgmq_jobs._actor();
    -- A cancelled group head lets the group's next job go.
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;
    perform pgmq_jobs._audit(queue, 'cancel', jsonb_build_object('job_ids', job_ids, 'cancelled', cancelled));
    return cancelled;
end
$$;

comment on function pgmq_jobs.cancel(text, bigint[]) is
'Cancel jobs: those of job_ids that are waiting, delayed, retrying, parked or in flight leave
the queue and are recorded as cancelled (not dead-lettered; job() reports them, until the
sweep drops them after keep_completed). An in-flight job''s worker finds its delivery gone:
complete counts 0, fail returns stale and extend null. A cancelled group head releases the
next job of its group. An unwindowed dedupe key is free at once; a windowed one is kept until
its window ends (an enqueue with it returns the cancelled job''s id until then). Returns how
many were cancelled; unknown or finished ids are not counted. Audited (action cancel).';

-- ======================================================================
-- sql/135_job.sql
-- ======================================================================
-- 135_job.sql: job, one job wherever it is.
--
-- Looked up by job id, in this order: the queue table (waiting, delayed,
-- in_flight, retrying, parked; see _job_state), the archive (completed), the
-- record of cancelled jobs (cancelled), the dead-letter queue (dead). The
-- first three are index lookups; the dead-letter queue holds the job id in
-- its message only, so that last step reads the dead-letter queue, and only
-- for an id the queue has issued that is found nowhere else.

-- The lookup itself. PL/pgSQL refuses an argument and an output column of
-- one name, which the public job(queue, job_id) has: it is a SQL function
-- over this one, whose output columns carry an o_ prefix.
create or replace function pgmq_jobs._job(q_name text, id bigint)
returns table (
    o_job_id bigint,
    o_state text,
    o_attempt integer,
    o_max_attempts integer,
    o_priority smallint,
    o_payload jsonb,
    o_enqueued_at timestamptz,
    o_visible_at timestamptz,
    o_errors jsonb,
    o_group_key text,
    o_dedupe_key text
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(q_name);
    now_at timestamptz := clock_timestamp();
    windowed_key text;
    seq text;
    last_id bigint;
begin
    if id is null then
        raise exception 'job_id must not be null' using errcode = '22004';
    end if;
    if id < 1 then
        raise exception 'job_id must be positive, got %', id using errcode = '22023';
    end if;
    -- A key enqueued with a dedupe_window is not on the job's row, but in
    -- dedupe_keys while its window lasts.
    select k.dedupe_key into windowed_key
    from pgmq_jobs.dedupe_keys as k
    where k.queue = q_name and k.job_id = id;

    -- 1. In the queue. A parked job's visible_at is its own time (headers.run_at),
    --    the earliest it may run once its group's head is gone. A delivery whose
    --    visibility timeout ran out shows that in its errors, as its next claim
    --    records it.
    return query execute pg_catalog.format(
        $sql$
        select
            q.msg_id,
            pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $2),
            q.read_ct,
            coalesce((q.headers ->> 'max_attempts')::integer, $3),
            coalesce((q.headers ->> 'priority')::smallint, 0::smallint),
            q.message,
            coalesce((q.headers ->> 'first_enqueued_at')::timestamptz, q.enqueued_at),
            case when q.vt = 'infinity' then (q.headers ->> 'run_at')::timestamptz else q.vt end,
            coalesce(
                case when q.vt <= $2 then pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt) else q.headers end
                -> 'errors',
                '[]'
            ),
            q.headers ->> 'group_key',
            coalesce(q.headers ->> 'dedupe_key', $4)
        from pgmq.%I as q
        where q.msg_id = $1
        $sql$,
        'q_' || q_name
    ) using id, now_at, s.max_attempts, windowed_key;
    if found then
        return;
    end if;

    -- 2. Completed, in the archive (queues with keep_completed > 0).
    return query execute pg_catalog.format(
        $sql$
        select
            a.msg_id, 'completed'::text, a.read_ct,
            coalesce((a.headers ->> 'max_attempts')::integer, $2),
            coalesce((a.headers ->> 'priority')::smallint, 0::smallint),
            a.message,
            coalesce((a.headers ->> 'first_enqueued_at')::timestamptz, a.enqueued_at),
            null::timestamptz,
            coalesce(a.headers -> 'errors', '[]'),
            a.headers ->> 'group_key',
            coalesce(a.headers ->> 'dedupe_key', $3)
        from pgmq.%I as a
        where a.msg_id = $1
        limit 1
        $sql$,
        'a_' || q_name
    ) using id, s.max_attempts, windowed_key;
    if found then
        return;
    end if;

    -- 3. Cancelled.
    return query
    select
        c.job_id, 'cancelled'::text, c.attempt,
        coalesce((c.headers ->> 'max_attempts')::integer, s.max_attempts),
        coalesce((c.headers ->> 'priority')::smallint, 0::smallint),
        c.payload,
        coalesce((c.headers ->> 'first_enqueued_at')::timestamptz, c.enqueued_at),
        null::timestamptz,
        coalesce(c.headers -> 'errors', '[]'),
        c.headers ->> 'group_key',
        coalesce(c.headers ->> 'dedupe_key', windowed_key)
    from pgmq_jobs.cancelled_jobs as c
    where c.queue = q_name and c.job_id = id;
    if found then
        return;
    end if;

    -- 4. Dead, in the dead-letter queue: only for an id the queue has issued.
    --    A replayed dead letter left the dead-letter queue as a new job (with
    --    its own id), so the old id is found nowhere any more.
    seq := pg_catalog.pg_get_serial_sequence(pg_catalog.format('pgmq.%I', 'q_' || q_name), 'msg_id');
    if seq is not null then
        execute pg_catalog.format('select case when is_called then last_value else 0 end from %s', seq) into last_id;
        if id > last_id then
            return;
        end if;
    end if;
    return query execute pg_catalog.format(
        $sql$
        select
            $1, 'dead'::text,
            (d.message ->> 'attempts')::integer,
            coalesce((d.message ->> 'max_attempts')::integer, $2),
            coalesce((d.message ->> 'priority')::smallint, 0::smallint),
            d.message -> 'payload',
            (d.message ->> 'enqueued_at')::timestamptz,
            null::timestamptz,
            coalesce(d.message -> 'errors', '[]'),
            d.message ->> 'group_key',
            coalesce(d.message ->> 'dedupe_key', $3)
        from pgmq.%I as d
        where (d.message -> 'job_id') = pg_catalog.to_jsonb($1)
        order by d.msg_id desc
        limit 1
        $sql$,
        'q_' || q_name || '_dlq'
    ) using id, s.max_attempts, windowed_key;
end
$$;

create or replace function pgmq_jobs.job(queue text, job_id bigint)
returns table (
    job_id bigint,
    state text,
    attempt integer,
    max_attempts integer,
    priority smallint,
    payload jsonb,
    enqueued_at timestamptz,
    visible_at timestamptz,
    errors jsonb,
    group_key text,
    dedupe_key text
)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select * from pgmq_jobs._job($1, $2)
$$;

comment on function pgmq_jobs.job(text, bigint) is
'One job of a queue wherever it is, or no row for an id the queue does not know (or no longer
keeps). state: waiting (never delivered, visible now), delayed (never delivered, visible later),
in_flight (an open delivery, its visibility timeout running), retrying (delivered before and
no delivery running: a failed or timed-out one; retrying until claimed again, also once its
retry time has come), parked (an ordered group''s job waiting behind the group''s head),
completed (in the archive), dead (in the dead-letter queue) or cancelled. attempt: deliveries
so far (for an in-flight job its current one, the fencing token). enqueued_at: the first
enqueue (for a replayed job, its original''s). visible_at: when it is or becomes visible (a
parked job: its own time, once its group lets it go); null once finished. errors: every
recorded error with its attempt and time. A replayed dead letter lives on as a new job id.';

-- ======================================================================
-- sql/136_reschedule.sql
-- ======================================================================
-- 136_reschedule.sql: reschedule, move jobs that are not running in time.
--
-- Waiting, delayed and retrying jobs become visible at run_at (a time in the
-- past means now: they do not jump ahead of jobs already ready). An in-flight
-- job is left alone (its worker holds it; snooze is the worker's way). A
-- parked job (a group member behind its head) keeps waiting for its group:
-- its own time, headers.run_at, becomes run_at, so it runs at run_at or when
-- its group lets it go, whichever is later. A retrying job whose delivery had
-- timed out gets that timeout recorded now, as its next claim would have,
-- which also closes that delivery: its stalled worker can no longer finish it.

create or replace function pgmq_jobs.reschedule(queue text, job_ids bigint[], run_at timestamptz)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    now_at timestamptz := clock_timestamp();
    visible_at timestamptz;
    moved integer;
begin
    perform pgmq_jobs._check_job_ids(job_ids);
    if run_at is null then
        raise exception 'run_at must not be null' using errcode = '22004';
    end if;
    if not isfinite(run_at) then
        raise exception 'run_at must be a finite time, got %', run_at using errcode = '22023';
    end if;
    visible_at := greatest(run_at, now_at);
    -- In flight: read_ct > 0, an open delivery and its visibility timeout
    -- running. Re-checked on the newest row version when a claim holds a row.
    execute pg_catalog.format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = case when q.vt = 'infinity' then q.vt else $2 end,
            headers = case
                when q.vt = 'infinity' then coalesce(q.headers, '{}') || jsonb_build_object('run_at', $2)
                else pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt)
            end
        where q.msg_id = any($1)
            and not (q.read_ct > 0 and q.vt > $3 and q.vt <> 'infinity' and %2$s)
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) using job_ids, visible_at, now_at;
    get diagnostics moved = row_count;
    if moved > 0 and visible_at <= clock_timestamp() then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    perform pgmq_jobs._audit(queue, 'reschedule', jsonb_build_object(
        'job_ids', job_ids, 'run_at', run_at, 'rescheduled', moved
    ));
    return moved;
end
$$;

comment on function pgmq_jobs.reschedule(text, bigint[], timestamptz) is
'Move waiting, delayed and retrying jobs of job_ids to become visible at run_at (not null,
finite; a time in the past means now). A parked job (an ordered group''s job behind its head)
takes run_at as its own time and still waits for its group. In-flight, unknown and finished
jobs are left alone and not counted. Returns how many were rescheduled. The attempt count is
unchanged. Audited (action reschedule).';

-- ======================================================================
-- sql/137_list_jobs.sql
-- ======================================================================
-- 137_list_jobs.sql: list_jobs, a page of a queue's jobs in one state.
--
-- The rows are those of job() (sql/135_job.sql), for up to lim jobs. Each
-- state is found by a bounded index walk that stops after lim rows of that
-- state; it reads besides them only the rows of other states that share its
-- stretch of the index, never the queue's whole depth:
--   waiting    the queue's vt index up to now, oldest first; it also passes
--              the retrying jobs whose retry time has come (read_ct > 0);
--   delayed    the vt index from now on, soonest first; it also passes the
--              deliveries running now and the retries scheduled later;
--   in_flight  the index of delivered jobs (vt where read_ct > 0) from now on;
--              it also passes the retries scheduled later;
--   retrying   the index of delivered jobs from its start, by retry time; it
--              also passes the deliveries running now;
--   parked     the vt index at 'infinity' (its order among parked jobs is the
--              index's, shown by job id);
--   completed  the archive by job id, newest first;
--   dead       the dead-letter queue, newest dead letter first;
--   cancelled  pgmq_jobs.cancelled_jobs by (queue, cancelled_at), newest first;
--   null       every job still in the queue (waiting … parked) by job id.
-- Waiting, delayed, in_flight, retrying and parked are told apart as job()
-- does, by pgmq_jobs._job_state. A windowed dedupe key (not on the job's row)
-- is looked up in pgmq_jobs.dedupe_keys among the queue's live keys.

-- The walk itself. PL/pgSQL refuses an argument and an output column of one
-- name, as in _job: the public list_jobs is a SQL function over this one.
create or replace function pgmq_jobs._list_jobs(q_name text, want text, lim integer)
returns table (
    o_job_id bigint,
    o_state text,
    o_attempt integer,
    o_max_attempts integer,
    o_priority smallint,
    o_payload jsonb,
    o_enqueued_at timestamptz,
    o_visible_at timestamptz,
    o_errors jsonb,
    o_group_key text,
    o_dedupe_key text
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(q_name);
    now_at timestamptz := clock_timestamp();
    walk text;
    page text;
    ordering text;
begin
    if want is not null and not want = any(array[
        'waiting', 'delayed', 'in_flight', 'retrying', 'parked', 'completed', 'dead', 'cancelled'
    ]) then
        raise exception 'state must be waiting, delayed, in_flight, retrying, parked, completed, dead, cancelled or null, got %', want
            using errcode = '22023';
    end if;
    if lim is null then
        raise exception 'lim must not be null' using errcode = '22004';
    end if;
    if lim < 1 or lim > 1000 then
        raise exception 'lim must be between 1 and 1000, got %', lim using errcode = '22023';
    end if;

    -- $1 now, $2 lim, $3 state, $4 queue, $5 the queue's max_attempts.
    if want is null or want in ('waiting', 'delayed', 'in_flight', 'retrying', 'parked') then
        -- The cut-off is the parameter $1, never clock_timestamp() in the
        -- statement: only a stable value bounds an index walk.
        walk := case want
            when 'waiting' then 'q.vt <= $1 and q.read_ct <= 0 order by q.vt'
            when 'delayed' then
                $w$q.vt > $1 and q.vt < 'infinity' and q.read_ct <= 0 order by q.vt$w$
            when 'in_flight' then
                $w$q.read_ct > 0 and q.vt > $1 and q.vt < 'infinity'
                and pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $1) = 'in_flight'
                order by q.vt$w$
            when 'retrying' then
                $w$q.read_ct > 0 and q.vt < 'infinity'
                and pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $1) = 'retrying'
                order by q.vt$w$
            when 'parked' then $w$q.vt = 'infinity' order by q.vt$w$
            else 'true order by q.msg_id'
        end;
        ordering := case when want in ('parked') or want is null then 'p.job_id' else 'p.visible_at, p.job_id' end;
        -- Columns as in job(): a delivery whose visibility timeout ran out
        -- shows that in its errors; a parked job's time is headers.run_at.
        page := pg_catalog.format(
            $sql$
            select
                q.msg_id as job_id,
                pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $1) as state,
                q.read_ct as attempt,
                coalesce((q.headers ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((q.headers ->> 'priority')::smallint, 0::smallint) as priority,
                q.message as payload,
                coalesce((q.headers ->> 'first_enqueued_at')::timestamptz, q.enqueued_at) as enqueued_at,
                case when q.vt = 'infinity' then (q.headers ->> 'run_at')::timestamptz else q.vt end
                    as visible_at,
                coalesce(
                    case when q.vt <= $1 then pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt) else q.headers end
                    -> 'errors',
                    '[]'
                ) as errors,
                q.headers ->> 'group_key' as group_key,
                q.headers ->> 'dedupe_key' as dedupe_key,
                null::timestamptz as at
            from pgmq.%I as q
            where %s
            limit $2
            $sql$,
            'q_' || q_name, walk
        );
    elsif want = 'completed' then
        ordering := 'p.job_id desc';
        page := pg_catalog.format(
            $sql$
            select
                a.msg_id as job_id, 'completed'::text as state, a.read_ct as attempt,
                coalesce((a.headers ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((a.headers ->> 'priority')::smallint, 0::smallint) as priority,
                a.message as payload,
                coalesce((a.headers ->> 'first_enqueued_at')::timestamptz, a.enqueued_at) as enqueued_at,
                null::timestamptz as visible_at,
                coalesce(a.headers -> 'errors', '[]') as errors,
                a.headers ->> 'group_key' as group_key,
                a.headers ->> 'dedupe_key' as dedupe_key,
                null::timestamptz as at
            from pgmq.%I as a
            order by a.msg_id desc
            limit $2
            $sql$,
            'a_' || q_name
        );
    elsif want = 'dead' then
        ordering := 'p.at desc, p.job_id desc';
        page := pg_catalog.format(
            $sql$
            select
                (d.message ->> 'job_id')::bigint as job_id, 'dead'::text as state,
                (d.message ->> 'attempts')::integer as attempt,
                coalesce((d.message ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((d.message ->> 'priority')::smallint, 0::smallint) as priority,
                d.message -> 'payload' as payload,
                (d.message ->> 'enqueued_at')::timestamptz as enqueued_at,
                null::timestamptz as visible_at,
                coalesce(d.message -> 'errors', '[]') as errors,
                d.message ->> 'group_key' as group_key,
                d.message ->> 'dedupe_key' as dedupe_key,
                d.enqueued_at as at
            from pgmq.%I as d
            order by d.msg_id desc
            limit $2
            $sql$,
            'q_' || q_name || '_dlq'
        );
    else
        ordering := 'p.at desc, p.job_id desc';
        page := $sql$
            select
                c.job_id, 'cancelled'::text as state, c.attempt,
                coalesce((c.headers ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((c.headers ->> 'priority')::smallint, 0::smallint) as priority,
                c.payload,
                coalesce((c.headers ->> 'first_enqueued_at')::timestamptz, c.enqueued_at) as enqueued_at,
                null::timestamptz as visible_at,
                coalesce(c.headers -> 'errors', '[]') as errors,
                c.headers ->> 'group_key' as group_key,
                c.headers ->> 'dedupe_key' as dedupe_key,
                c.cancelled_at as at
            from pgmq_jobs.cancelled_jobs as c
            where c.queue = $4
            order by c.cancelled_at desc
            limit $2
        $sql$;
    end if;

    return query execute pg_catalog.format(
        $sql$
        with p as materialized (%s)
        select
            p.job_id, p.state, p.attempt, p.max_attempts, p.priority, p.payload,
            p.enqueued_at, p.visible_at, p.errors, p.group_key,
            coalesce(
                p.dedupe_key,
                (select k.dedupe_key from pgmq_jobs.dedupe_keys as k where k.queue = $4 and k.job_id = p.job_id)
            )
        from p
        order by %s
        $sql$,
        page, ordering
    ) using now_at, lim, want, q_name, s.max_attempts;
end
$$;

create or replace function pgmq_jobs.list_jobs(queue text, state text default null, lim integer default 100)
returns table (
    job_id bigint,
    state text,
    attempt integer,
    max_attempts integer,
    priority smallint,
    payload jsonb,
    enqueued_at timestamptz,
    visible_at timestamptz,
    errors jsonb,
    group_key text,
    dedupe_key text
)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select * from pgmq_jobs._list_jobs($1, $2, $3)
$$;

comment on function pgmq_jobs.list_jobs(text, text, integer) is
'Up to lim (1..1000, default 100) jobs of a queue in one state, with the columns of job().
state: waiting (oldest first), delayed, in_flight or retrying (by visible_at), parked (by
job id), completed, dead or cancelled (newest first), or null for every job still in the
queue (by job id). Cost: a bounded index walk that stops after lim rows of the state; it
also reads the rows of other states sharing its stretch of the index (waiting passes the
retries that are due, delayed the running deliveries and later retries, in_flight the
later retries, retrying the running deliveries), never the rest of the queue''s depth; a
windowed dedupe key is looked up among the queue''s live keys. Admin only.';

-- ======================================================================
-- sql/140_heartbeat.sql
-- ======================================================================
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

-- ======================================================================
-- sql/141_workers.sql
-- ======================================================================
-- 141_workers.sql: view workers, worker health from their heartbeats.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
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
        when w.last_seen_at operator(pg_catalog.<) (
            pg_catalog.now() operator(pg_catalog.-) greatest(w.heartbeat_interval operator(pg_catalog.*) 60, interval '10 minutes')
        )
            then 'gone'
        when w.last_seen_at operator(pg_catalog.<) (
            pg_catalog.now() operator(pg_catalog.-) (w.heartbeat_interval operator(pg_catalog.*) 3)
        ) then 'stale'
        else 'alive'
    end as status
from pgmq_jobs.worker_heartbeats as w;
-- noqa: enable=LT01

comment on view pgmq_jobs.workers is
'Worker processes and their health: alive, stale (missed three heartbeats), or gone (stopped
cleanly, or silent for 10 minutes / 60 heartbeats)';

-- ======================================================================
-- sql/142_audit.sql
-- ======================================================================
-- 142_audit.sql: view audit, the trail of operator actions.

create or replace view pgmq_jobs.audit as
select
    a.id,
    a.at,
    a.actor as role,
    a.queue,
    a.action,
    a.change,
    a.session_role
from pgmq_jobs.audit_log as a;

comment on view pgmq_jobs.audit is
'Operator actions, append-only: acting role (the SET ROLE role when there is one), time,
queue, action (create_queue, configure_queue, drop_queue, replay, purge_dead_letters,
schedule, unschedule, ...), what changed, and session_role, the session''s login role.
Job completions are not audited (the archive is their record).';

-- ======================================================================
-- sql/143_wait_for_jobs.sql
-- ======================================================================
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

-- ======================================================================
-- sql/144_schema_info.sql
-- ======================================================================
-- 144_schema_info.sql: schema_info, the release a database runs and the
-- oldest client release it still serves. Workers and clients read it at
-- start and say so when their package is of another release.

create or replace function pgmq_jobs.schema_info(
    out version text,
    out oldest_client text,
    out installed_at timestamptz
)
returns record
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select
        v.version,
        -- Clients of this release and of the one before it: 0.2.0 keeps
        -- every signature that 0.1.0 workers and producers call.
        '0.1.0'::text,
        v.installed_at
    from pgmq_jobs.schema_version as v
    order by pg_catalog.string_to_array(v.version, '.')::integer [] desc
    limit 1
$$;

comment on function pgmq_jobs.schema_info() is
'The pgmq-jobs release this database runs (the newest of schema_version), the oldest client '
'release it still serves, and when that release was installed';

-- ======================================================================
-- sql/150_invoker_cron.sql
-- ======================================================================
-- 150_invoker_cron.sql: schedule_invoker, let pg_cron call the HTTP invoker
-- (`pgmq-jobs serve`, or an Edge Function speaking the same protocol) through
-- pg_net, so that jobs run without any long-lived worker process.
--
-- Created everywhere; usable only where pg_cron and pg_net are installed, which
-- is checked when it is called. The secret ends up in the text of the cron job
-- (cron.job.command), readable by whoever can read that job.
--
-- The pg_cron job is named pgmq_jobs_invoke_<job_name>: a caller's name never
-- reaches a foreign job, nor the project's own sweep, partman and handler jobs.

create or replace function pgmq_jobs.schedule_invoker(
    job_name text,
    schedule text,
    url text,
    queue text,
    secret text,
    max_seconds integer default 50,
    max_jobs integer default null
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cron_name text := pgmq_jobs._invoke_job_name(job_name);
    body jsonb;
    headers jsonb;
    command text;
begin
    if not exists (select from pg_catalog.pg_extension where extname = 'pg_net') then
        raise exception 'schedule_invoker needs the pg_net extension, which is not installed in this database'
            using errcode = '55000',
            hint = 'create extension pg_net (Supabase: Database, Extensions), or run '
                || '`pgmq-jobs worker --drain --max-seconds 50` from a system cron instead';
    end if;
    if not exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
        raise exception 'schedule_invoker needs the pg_cron extension, which is not installed in this database'
            using errcode = '55000',
            hint = 'create extension pg_cron, or run '
                || '`pgmq-jobs worker --drain --max-seconds 50` from a system cron instead';
    end if;
    perform pgmq_jobs._settings(queue);
    if url is null or url !~ '^https?://' then
        raise exception 'url must be an http(s) URL of the invoker, got %', coalesce(url, 'null')
            using errcode = '22023';
    end if;
    if secret is null or length(secret) < 16 then
        raise exception 'secret must be at least 16 characters' using errcode = '22023';
    end if;
    if max_seconds is null or max_seconds < 1 or max_seconds > 3600 then
        raise exception 'max_seconds must be between 1 and 3600, got %', coalesce(max_seconds::text, 'null')
            using errcode = '22023';
    end if;
    if max_jobs is not null and max_jobs < 1 then
        raise exception 'max_jobs must be positive, got %', max_jobs using errcode = '22023';
    end if;

    body := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'queue', queue, 'max_seconds', max_seconds, 'max_jobs', max_jobs
    ));
    headers := pg_catalog.jsonb_build_object(
        'Content-Type', 'application/json', 'Authorization', 'Bearer ' || secret
    );
    command := pg_catalog.format(
        'select net.http_post(url := %L, body := %L::jsonb, headers := %L::jsonb, '
        'timeout_milliseconds := %s)',
        url, body, headers, (max_seconds + 10) * 1000
    );
    return pgmq_jobs._cron_schedule(cron_name, schedule, command);
end
$$;

comment on function pgmq_jobs.schedule_invoker(text, text, text, text, text, integer, integer) is
'Create (or replace, by job_name) the pg_cron job pgmq_jobs_invoke_<job_name> that POSTs
{"queue", "max_seconds", "max_jobs"} to the HTTP invoker at url with Authorization: Bearer
secret, through pg_net, on schedule (cron syntax; pg_cron 1.5+ also takes ''10 seconds'').
job_name: 1 to 46 lowercase letters, digits, _ . -. Returns the cron job id; remove it with
pgmq_jobs.unschedule_invoker(job_name). Needs pg_cron and pg_net (checked here, with a clear
error); without them run `pgmq-jobs worker --drain` from a system cron. The secret is stored in
the cron job.';

-- ======================================================================
-- sql/151_unschedule_invoker.sql
-- ======================================================================
-- 151_unschedule_invoker.sql: unschedule_invoker, remove an invoker schedule
-- made by schedule_invoker (pg_net) or pgmq_jobs_plpy.schedule_invoke.

-- Only ever the pg_cron job pgmq_jobs_invoke_<job_name>: never a foreign job,
-- nor the project's sweep, partman and handler jobs.
create or replace function pgmq_jobs.unschedule_invoker(job_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return pgmq_jobs._cron_unschedule(pgmq_jobs._invoke_job_name(job_name));
end
$$;

comment on function pgmq_jobs.unschedule_invoker(text) is
'Remove the pg_cron job pgmq_jobs_invoke_<job_name> made by schedule_invoker (or by
pgmq_jobs_plpy.schedule_invoke); true when one was removed, false when there was none.';

-- ======================================================================
-- sql/160_allow_enqueue.sql
-- ======================================================================
-- 160_allow_enqueue.sql: allow_enqueue, let a role enqueue into one queue
-- through pgmq_jobs.enqueue_as_user (e.g. Supabase's authenticated role,
-- calling through PostgREST). Nothing is allowed until an admin says so.

-- Which roles may enqueue into which queue through enqueue_as_user. Rows go
-- when their queue is dropped. Roles are kept by name (as PostgreSQL's own
-- grants are dumped), so a dropped role's rows apply to a new role of that name.
create table if not exists pgmq_jobs.enqueue_allowlist (
    queue text not null references pgmq_jobs.queue_settings (queue) on delete cascade,
    role_name text not null,
    allowed_at timestamptz not null default pg_catalog.now(),
    primary key (queue, role_name)
);
comment on table pgmq_jobs.enqueue_allowlist is
'Roles allowed to enqueue into a queue through pgmq_jobs.enqueue_as_user; change it with
pgmq_jobs.allow_enqueue and pgmq_jobs.disallow_enqueue';
revoke all on pgmq_jobs.enqueue_allowlist from public;
grant select on pgmq_jobs.enqueue_allowlist to pgmq_jobs_admin;

create or replace function pgmq_jobs.allow_enqueue(queue text, role_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    if role_name is null then
        raise exception 'role_name must not be null' using errcode = '22004';
    end if;
    if pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) is null then
        raise exception 'unknown role %', pg_catalog.quote_ident(role_name)
            using errcode = '42704',
            hint = 'Give the role''s exact name, e.g. authenticated.';
    end if;
    -- The allowlist, not this grant, decides: enqueue_as_user refuses every
    -- queue the caller is not listed for.
    execute pg_catalog.format('grant usage on schema pgmq_jobs to %I', role_name);
    execute pg_catalog.format(
        'grant execute on function pgmq_jobs.enqueue_as_user(text, jsonb) to %I', role_name
    );
    insert into pgmq_jobs.enqueue_allowlist as a (queue, role_name)
    values (queue, role_name)
    on conflict on constraint enqueue_allowlist_pkey do nothing;
    if found then
        perform pgmq_jobs._audit(queue, 'allow_enqueue', pg_catalog.jsonb_build_object('role', role_name));
        return true;
    end if;
    return false;
end
$$;

comment on function pgmq_jobs.allow_enqueue(text, text) is
'Allow role_name to enqueue into queue through pgmq_jobs.enqueue_as_user(queue, payload), and
grant it usage on schema pgmq_jobs and execute on enqueue_as_user (nothing else). Returns
false when it was already allowed. Undo with pgmq_jobs.disallow_enqueue.';

revoke all on function pgmq_jobs.allow_enqueue(text, text) from public;

-- ======================================================================
-- sql/161_disallow_enqueue.sql
-- ======================================================================
-- 161_disallow_enqueue.sql: disallow_enqueue, take back allow_enqueue.

create or replace function pgmq_jobs.disallow_enqueue(queue text, role_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    removed boolean;
begin
    perform pgmq_jobs._settings(queue);
    if role_name is null then
        raise exception 'role_name must not be null' using errcode = '22004';
    end if;
    -- Revoking the owner's USAGE on its own schema would break every function
    -- wherever the owner is not a superuser (Supabase), and re-install with it.
    if pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) = (
        select n.nspowner from pg_catalog.pg_namespace as n where n.nspname = 'pgmq_jobs'
    ) then
        raise exception 'role % owns schema pgmq_jobs: disallow_enqueue cannot take its rights away',
            pg_catalog.quote_ident(role_name)
            using errcode = '22023',
            hint = 'Name the role that allow_enqueue let in.';
    end if;
    delete from pgmq_jobs.enqueue_allowlist as a
    where a.queue = disallow_enqueue.queue and a.role_name = disallow_enqueue.role_name;
    removed := found;
    if removed then
        perform pgmq_jobs._audit(queue, 'disallow_enqueue', pg_catalog.jsonb_build_object('role', role_name));
    end if;
    -- A role with no queue left loses what allow_enqueue granted it (the
    -- pgmq_jobs roles keep their schema usage).
    if pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) is not null
        and not exists (
            select from pgmq_jobs.enqueue_allowlist as a
            where a.role_name = disallow_enqueue.role_name
        ) then
        execute pg_catalog.format(
            'revoke execute on function pgmq_jobs.enqueue_as_user(text, jsonb) from %I', role_name
        );
        if role_name not in ('pgmq_jobs_producer', 'pgmq_jobs_worker', 'pgmq_jobs_admin') then
            execute pg_catalog.format('revoke usage on schema pgmq_jobs from %I', role_name);
        end if;
    end if;
    return removed;
end
$$;

comment on function pgmq_jobs.disallow_enqueue(text, text) is
'Stop role_name from enqueueing into queue through pgmq_jobs.enqueue_as_user. When no queue is
left for the role, revoke what allow_enqueue granted it. Returns false when it was not allowed.';

revoke all on function pgmq_jobs.disallow_enqueue(text, text) from public;

-- ======================================================================
-- sql/162_enqueue_as_user.sql
-- ======================================================================
-- 162_enqueue_as_user.sql: enqueue_as_user, the enqueue that signed-in users
-- may call (through PostgREST on Supabase): only into the queues an admin
-- allowed their role with pgmq_jobs.allow_enqueue.

create or replace function pgmq_jobs.enqueue_as_user(queue text, payload jsonb)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    -- The calling role: PostgREST runs requests under SET ROLE authenticated,
    -- which SECURITY DEFINER leaves alone (current_user here is the owner).
    caller text := pgmq_jobs._actor();
begin
    -- One error for unlisted and unknown queues alike: callers learn nothing
    -- about queues they may not use.
    if queue is null or not exists (
        select from pgmq_jobs.enqueue_allowlist as a
        where a.queue = enqueue_as_user.queue
            and pg_catalog.pg_has_role(
                caller, pg_catalog.to_regrole(pg_catalog.quote_ident(a.role_name)), 'usage'
            )
    ) then
        raise exception 'role % may not enqueue into queue %',
            pg_catalog.quote_ident(caller), coalesce(pg_catalog.quote_literal(queue), 'null')
            using errcode = '42501',
            hint = 'An admin allows it with pgmq_jobs.allow_enqueue(queue, role).';
    end if;
    return pgmq_jobs.enqueue(queue, payload);
end
$$;

comment on function pgmq_jobs.enqueue_as_user(text, jsonb) is
'Enqueue one job as the calling role (SET ROLE role, e.g. PostgREST''s authenticated, else the
login role) into a queue that pgmq_jobs.allow_enqueue allowed for it or a role it has the
privileges of; any other queue, known or not, is refused (SQLSTATE 42501). Executable only
by roles allow_enqueue granted it to. Same payload rules as enqueue; returns the job id.';

revoke all on function pgmq_jobs.enqueue_as_user(text, jsonb) from public;

-- ======================================================================
-- sql/200_sweep.sql
-- ======================================================================
-- 200_sweep.sql: sweep, the periodic maintenance pg_cron runs every minute.

create or replace function pgmq_jobs.sweep(
    max_rows integer default 10000,
    cron_history interval default interval '7 days',
    count_cap integer default 100000
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    started timestamptz := clock_timestamp();
    this_minute timestamptz := date_trunc('minute', clock_timestamp());
    s pgmq_jobs.queue_settings;
    ids bigint[];
    attempts integer[];
    n integer;
    expired integer := 0;
    archived integer := 0;
    dead_purged integer := 0;
    folded integer := 0;
    cron_runs integer := 0;
    workers_removed integer := 0;
    snapshots integer := 0;
    keys_expired integer := 0;
    cancelled_purged integer := 0;
begin
    if max_rows is null or max_rows < 1 or max_rows > 1000000 then
        raise exception 'max_rows must be between 1 and 1000000, got %', coalesce(max_rows::text, 'null')
            using errcode = '22023';
    end if;
    if count_cap is null or count_cap < 1 then
        raise exception 'count_cap must be positive, got %', coalesce(count_cap::text, 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_interval('cron_history', cron_history, interval '0', interval '3650 days');
    -- Never two sweeps at once: the second returns at once.
    if not pg_try_advisory_xact_lock(hashtext('pgmq_jobs.sweep')) then
        return jsonb_build_object('skipped', true, 'reason', 'another sweep is running');
    end if;

    for s in select * from pgmq_jobs.queue_settings order by queue loop
        -- 1. Deliveries past their attempts whose visibility timeout ran out
        --    (their worker died on the last attempt): to the DLQ, reason expired.
        --    The partial index on (vt) where read_ct > 0 keeps this a walk over
        --    delivered jobs only, whatever waits in the queue, and over those
        --    whose vt has passed only: every cut-off on an indexed column in
        --    this function is a parameter taken from the clock, since a
        --    comparison with clock_timestamp() itself (volatile) is never an
        --    index condition and would read every entry behind the cut-off.
        execute format(
            $sql$
            select coalesce(array_agg(x.msg_id), '{}'), coalesce(array_agg(x.read_ct), '{}')
            from (
                select q.msg_id, q.read_ct
                from pgmq.%I as q
                where q.vt <= $3 and q.read_ct > 0
                    and q.read_ct >= coalesce((q.headers ->> 'max_attempts')::integer, $1)
                order by q.vt
                limit $2
                for update skip locked
            ) as x
            $sql$,
            'q_' || s.queue
        ) into ids, attempts using s.max_attempts, max_rows, clock_timestamp();
        if cardinality(ids) > 0 then
            expired := expired + pgmq_jobs._route_expired(s.queue, ids, attempts);
        end if;

        -- 2. Retention: completions older than keep_completed ...
        execute format(
            $sql$
            delete from pgmq.%1$I as a
            where a.msg_id in (
                select a2.msg_id from pgmq.%1$I as a2
                where a2.archived_at < $1
                order by a2.archived_at
                limit $2
            )
            $sql$,
            'a_' || s.queue
        ) using clock_timestamp() - s.keep_completed, max_rows;
        get diagnostics n = row_count;
        archived := archived + n;

        -- ... and dead letters older than dead_letter_retention, when set.
        if s.dead_letter_retention is not null then
            execute format(
                $sql$
                delete from pgmq.%1$I as d
                where d.msg_id in (
                    select d2.msg_id from pgmq.%1$I as d2
                    where d2.vt < $1
                    order by d2.vt
                    limit $2
                )
                $sql$,
                'q_' || s.queue || '_dlq'
            ) using clock_timestamp() - s.dead_letter_retention, max_rows;
            get diagnostics n = row_count;
            dead_purged := dead_purged + n;
        end if;

        -- ... and cancelled jobs older than keep_completed (kept as long as
        -- completions), a walk of the (queue, cancelled_at) index.
        execute $sql$
            delete from pgmq_jobs.cancelled_jobs as c
            where c.queue = $1 and c.job_id = any(array(
                select c2.job_id from pgmq_jobs.cancelled_jobs as c2
                where c2.queue = $1 and c2.cancelled_at < $2
                order by c2.cancelled_at
                limit $3
            ))
            $sql$
        using s.queue, clock_timestamp() - s.keep_completed, max_rows;
        get diagnostics n = row_count;
        cancelled_purged := cancelled_purged + n;

        -- 3. This minute's gauges. Counts stop at count_cap so a sweep costs
        --    the same on a queue of a million (ordered by vt, so that they
        --    walk the vt index and stop at the cap rather than scan the table
        --    for rows on the wrong side of the time); in_flight walks the
        --    partial index of delivered jobs, which also holds the failed ones
        --    waiting for their retry, so it stops at the cap as well. The time
        --    is a parameter ($3), not clock_timestamp(): planned with its
        --    value, a count of future jobs walks the vt index instead of
        --    scanning a queue that has none.
        execute format(
            $sql$
            insert into pgmq_jobs.queue_history as h (
                queue, minute, ready, in_flight, delayed, dead_letters
            )
            select
                %3$L, $1,
                (select count(*) from (
                    select from pgmq.%1$I as q where q.vt <= $3 order by q.vt limit $2) as c),
                f.in_flight,
                greatest(f.future - f.in_flight, 0),
                (select count(*) from (select from pgmq.%2$I limit $2) as c)
            from (
                -- offset 0 keeps f a subquery: pulled up, each use of
                -- in_flight would count it again.
                select
                    (select count(*) from (
                        select from pgmq.%1$I as q where q.vt > $3 order by q.vt limit $2) as c
                    ) as future,
                    (select count(*) from (
                        select from pgmq.%1$I as q
                        where q.vt > $3 and q.read_ct > 0 and %4$s limit $2) as c
                    ) as in_flight
                offset 0
            ) as f
            on conflict (queue, minute) do update set
                ready = excluded.ready,
                in_flight = excluded.in_flight,
                delayed = excluded.delayed,
                dead_letters = excluded.dead_letters
            $sql$,
            'q_' || s.queue, 'q_' || s.queue || '_dlq', s.queue,
            pgmq_jobs._sql_open_delivery('q')
        ) using this_minute, count_cap, clock_timestamp();
        snapshots := snapshots + 1;
    end loop;

    -- 4. Fold the outcome log of finished minutes into the history, and the
    --    committed enqueues into each queue's running total (queue_totals).
    with moved as (
        delete from pgmq_jobs.outcome_log as o
        where o.at < this_minute
        returning o.*
    ),

    totals as (
        insert into pgmq_jobs.queue_totals as t (queue, enqueued)
        select m.queue, sum(m.enqueued)
        from moved as m
        where exists (select from pgmq_jobs.queue_settings as qs where qs.queue = m.queue)
        group by m.queue
        having sum(m.enqueued) > 0
        on conflict (queue) do update set enqueued = t.enqueued + excluded.enqueued
    )

    insert into pgmq_jobs.queue_history as h (
        queue, minute, completed, retried, dead, expired,
        duration_count, duration_ms_sum, duration_buckets, enqueued
    )
    select
        m.queue, date_trunc('minute', m.at), sum(m.completed), sum(m.retried), sum(m.dead),
        sum(m.expired), sum(m.duration_count), sum(m.duration_ms_sum),
        pgmq_jobs._sum_buckets(jsonb_agg(m.duration_buckets)), sum(m.enqueued)
    from moved as m
    group by m.queue, date_trunc('minute', m.at)
    on conflict (queue, minute) do update set
        completed = h.completed + excluded.completed,
        retried = h.retried + excluded.retried,
        dead = h.dead + excluded.dead,
        expired = h.expired + excluded.expired,
        duration_count = h.duration_count + excluded.duration_count,
        duration_ms_sum = h.duration_ms_sum + excluded.duration_ms_sum,
        duration_buckets = pgmq_jobs._add_buckets(h.duration_buckets, excluded.duration_buckets),
        enqueued = h.enqueued + excluded.enqueued;
    get diagnostics folded = row_count;

    -- This minute's snapshot of committed enqueues so far: the folded total
    -- plus the log of this minute (a rolled-back enqueue is in neither).
    update pgmq_jobs.queue_history as h
    set enqueued_total = coalesce(
        (select t.enqueued from pgmq_jobs.queue_totals as t where t.queue = h.queue), 0
    ) + coalesce(l.enqueued, 0)
    from pgmq_jobs.queue_settings as qs
    left join (
        select o.queue, sum(o.enqueued) as enqueued from pgmq_jobs.outcome_log as o group by o.queue
    ) as l on l.queue = qs.queue
    where h.queue = qs.queue and h.minute = this_minute;

    -- 4b. Each queue table's tuple statistics, for the table_bloat alert.
    perform pgmq_jobs._sample_tables(clock_timestamp());

    -- 5. Dedupe keys past their window, oldest first, bounded.
    delete from pgmq_jobs.dedupe_keys as k
    where (k.queue, k.dedupe_key) in (
        select k2.queue, k2.dedupe_key from pgmq_jobs.dedupe_keys as k2
        where k2.keep_until < started
        order by k2.keep_until
        limit max_rows
    );
    get diagnostics keys_expired = row_count;

    -- 6. Wake-up marks of workers that are no longer alive (killed, not stopped).
    delete from pgmq_jobs.waiting_workers as w
    where not exists (
        select from pgmq_jobs.workers as k where k.worker_id = w.worker_id and k.status = 'alive'
    ) and w.since < clock_timestamp() - interval '1 minute';

    -- Forget workers that stopped or went silent more than a week ago.
    delete from pgmq_jobs.worker_heartbeats as w
    where coalesce(w.stopped_at, w.last_seen_at) < clock_timestamp() - interval '7 days';
    get diagnostics workers_removed = row_count;

    -- 7. pg_cron's own run history.
    if pgmq_jobs._cron_ready() then
        delete from cron.job_run_details as d where d.end_time < clock_timestamp() - cron_history;
        get diagnostics cron_runs = row_count;
    end if;

    return jsonb_build_object(
        'skipped', false,
        'expired_to_dlq', expired,
        'completed_deleted', archived,
        'dead_letters_deleted', dead_purged,
        'history_rows_folded', folded,
        'snapshots', snapshots,
        'stale_workers', (select count(*) from pgmq_jobs.workers as w where w.status = 'stale'),
        'workers_forgotten', workers_removed,
        'dedupe_keys_expired', keys_expired,
        'cancelled_deleted', cancelled_purged,
        'cron_runs_deleted', cron_runs,
        'ms', round(extract(epoch from clock_timestamp() - started)::numeric * 1000, 1)
    );
end
$$;

comment on function pgmq_jobs.sweep(integer, interval, integer) is
'Periodic maintenance (pg_cron runs it every minute as job pgmq_jobs_sweep): routes deliveries
past max_attempts whose visibility timeout expired to the DLQ (reason expired); deletes
completions and cancelled jobs older than keep_completed and dead letters older than
dead_letter_retention; records this minute''s gauges (counts capped at count_cap) and folds outcome counts into queue_history
(committed enqueues also into queue_totals); samples each queue table''s tuple statistics for the table_bloat alert;
deletes dedupe keys past their window; forgets workers gone for a week; trims cron.job_run_details older than cron_history. At most
max_rows rows per queue and kind per run; never two sweeps at once. Returns a summary.';

-- ======================================================================
-- sql/210_process.sql
-- ======================================================================
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

-- ======================================================================
-- sql/211_drain.sql
-- ======================================================================
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

-- ======================================================================
-- sql/220_register_sweep.sql
-- ======================================================================
-- 220_register_sweep.sql: register sweep() as the pg_cron job
-- pgmq_jobs_sweep (every minute) where pg_cron is installed in this
-- database, and bring pg_partman's maintenance job up to date (an earlier
-- version had pg_cron call partman directly). pg_cron upserts by name, so
-- re-running never duplicates either.

do $register$
begin
    if pgmq_jobs._cron_ready() then
        if not exists (
            select from cron.job as j
            where j.jobname operator(pg_catalog.=) 'pgmq_jobs_sweep'
                and j.schedule operator(pg_catalog.=) '* * * * *'
                and j.command operator(pg_catalog.=) 'select pgmq_jobs.sweep()'
        ) then
            perform cron.schedule('pgmq_jobs_sweep', '* * * * *', 'select pgmq_jobs.sweep()');
        end if;
        perform pgmq_jobs._sync_partman_job();
    else
        raise notice 'pg_cron is not installed in this database: run `pgmq-jobs sweep` (or select pgmq_jobs.sweep()) every minute';
    end if;
end
$register$;

-- ======================================================================
-- sql/230_schedule.sql
-- ======================================================================
-- 230_schedule.sql: schedule, a cron-triggered enqueue through pg_cron.

create or replace function pgmq_jobs.schedule(
    name text, cron text, queue text, payload jsonb default '{}'
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    jobid bigint;
begin
    if name is null or name !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
        raise exception 'invalid schedule name %: use 1 to 63 lowercase letters, digits, _ . -',
            coalesce(quote_literal(left(name, 80)), 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_cron(cron);
    perform pgmq_jobs._check_payload(payload, s.max_payload_bytes);
    perform pgmq_jobs._require_cron();
    jobid := pgmq_jobs._cron_schedule(
        'pgmq_jobs_schedule_' || name,
        btrim(cron),
        format('select pgmq_jobs.enqueue(%L, %L::jsonb)', queue, payload::text)
    );
    insert into pgmq_jobs.schedule_settings as ss (name, cron, queue, payload)
    values (name, btrim(cron), queue, payload)
    on conflict on constraint schedule_settings_pkey do update set
        cron = excluded.cron,
        queue = excluded.queue,
        payload = excluded.payload,
        updated_at = now();
    perform pgmq_jobs._audit(queue, 'schedule',
        jsonb_build_object('name', name, 'cron', btrim(cron), 'payload', payload));
    return jobid;
end
$$;

comment on function pgmq_jobs.schedule(text, text, text, jsonb) is
'Create or update (by name) a pg_cron job that enqueues payload into queue on the cron
schedule: five fields, @hourly/@daily/@weekly/@monthly/@yearly, or with pg_cron 1.5+
''N seconds''. The expression is checked first and an error names the bad field. Returns the
pg_cron job id. Needs pg_cron in this database.';

-- ======================================================================
-- sql/231_unschedule.sql
-- ======================================================================
-- 231_unschedule.sql: unschedule, remove a cron schedule by name.

create or replace function pgmq_jobs.unschedule(name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    removed boolean;
    queue text;
begin
    if name is null then
        raise exception 'schedule name must not be null' using errcode = '22004';
    end if;
    delete from pgmq_jobs.schedule_settings as ss where ss.name = unschedule.name
    returning ss.queue into queue;
    removed := found;
    removed := pgmq_jobs._cron_unschedule('pgmq_jobs_schedule_' || name) or removed;
    if removed then
        perform pgmq_jobs._audit(queue, 'unschedule', jsonb_build_object('name', name));
    end if;
    return removed;
end
$$;

comment on function pgmq_jobs.unschedule(text) is
'Remove the schedule of that name and its pg_cron job. Returns false when there was none.';

-- ======================================================================
-- sql/232_schedules.sql
-- ======================================================================
-- 232_schedules.sql: view schedules, every cron schedule with its last run.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.schedules as
select
    ss.name,
    ss.cron,
    ss.queue,
    ss.payload,
    coalesce(j.active, false) as active,
    j.jobid,
    j.last_run_at,
    j.last_status,
    j.last_message,
    pgmq_jobs._next_run_at(ss.cron) as next_run_at,
    ss.created_at,
    ss.updated_at
from pgmq_jobs.schedule_settings as ss
left join lateral pgmq_jobs._cron_job('pgmq_jobs_schedule_' operator(pg_catalog.||) ss.name) as j on true;
-- noqa: enable=LT01

comment on view pgmq_jobs.schedules is
'Cron schedules that enqueue jobs: expression, target queue, payload, whether pg_cron has the
job active, its last run''s start time, status and message, and (where PL/Python support is
installed) its next run';

-- ======================================================================
-- sql/300_private_stats.sql
-- ======================================================================
-- 300_private_stats.sql: private helpers behind the observability views
-- (queue_stats, alerts): capped queue gauges, the n-th oldest ready job or dead
-- letter, and the sessions holding back vacuum.
--
-- The views run with their owner's rights on tables, but functions run as the
-- caller: the three helpers that read PGMQ tables or every session's activity
-- are therefore security definer and granted to pgmq_jobs_admin (only).

-- The gauges of one queue, cheap at any depth. Each count stops at cap rows
-- (an index walk over at most cap entries); a count that reaches the cap is
-- replaced by an estimate from the table's live-tuple statistics
-- (pg_stat_user_tables.n_live_tup, current to about a second) and flagged
-- (ready_estimated covers ready and delayed, derived from the same counts).
-- The counts are ordered by vt so that they walk the vt index and stop at the
-- cap, rather than scan the table past rows on the other side of the time.
-- in_flight walks the small partial index of delivered jobs; oldest_ready_at is
-- the first entry of the vt index; enqueued_total is the committed enqueues
-- the sweep has folded (queue_totals; queue_stats adds the log not folded yet).
-- The msg_id sequence would count rolled-back enqueues too.
create or replace function pgmq_jobs._queue_gauges(queue text, cap integer)
returns table (
    ready bigint,
    ready_estimated boolean,
    in_flight bigint,
    delayed bigint,
    dead bigint,
    dead_estimated boolean,
    oldest_ready_at timestamptz,
    enqueued_total bigint
)
language plpgsql
stable
security definer
rows 1
set search_path = pg_catalog, pg_temp
as $$
declare
    q regclass := to_regclass(format('pgmq.%I', 'q_' || queue));
    d regclass := to_regclass(format('pgmq.%I', 'q_' || queue || '_dlq'));
    future bigint;
    t timestamptz := clock_timestamp();
begin
    if q is null then
        return;
    end if;
    execute format(
        $sql$
        select
            (select count(*) from (
                select from pgmq.%1$I as q where q.vt <= $2 order by q.vt limit $1) as c),
            (select count(*) from (
                select from pgmq.%1$I as q where q.vt > $2 order by q.vt limit $1) as c),
            (select count(*) from (
                select from pgmq.%1$I as q
                where q.vt > $2 and q.read_ct > 0 and pgmq_jobs._open_delivery(q.headers, q.read_ct)
                limit $1) as c),
            (select min(q.vt) from pgmq.%1$I as q where q.vt <= $2),
            coalesce((select t.enqueued from pgmq_jobs.queue_totals as t where t.queue = $3), 0)
        $sql$,
        'q_' || queue
    ) into ready, future, in_flight, oldest_ready_at, enqueued_total using cap, t, queue;
    -- Past the cap, the total from the statistics minus the other (exact) count;
    -- when both reached it, only ready is estimated and delayed stays at the cap.
    ready_estimated := ready >= cap or future >= cap;
    if ready >= cap then
        ready := greatest(ready, pg_stat_get_live_tuples(q) - future);
    elsif future >= cap then
        future := greatest(future, pg_stat_get_live_tuples(q) - ready);
    end if;
    delayed := greatest(future - in_flight, 0);
    if d is not null then
        execute format(
            'select count(*) from (select from pgmq.%I limit $1) as c', 'q_' || queue || '_dlq'
        ) into dead using cap;
        dead_estimated := dead >= cap;
        if dead_estimated then
            dead := greatest(dead, pg_stat_get_live_tuples(d));
        end if;
    end if;
    return next;
end
$$;

-- When the n-th oldest job now ready became ready (kind 'ready', by vt), or
-- when the n-th oldest dead letter died (kind 'dead'): the moment since which
-- today's backlog alone exceeds n - 1. Null when there are fewer than n.
create or replace function pgmq_jobs._nth_at(queue text, kind text, n bigint)
returns timestamptz
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    found_at timestamptz;
begin
    if n is null or n < 1 or to_regclass(format('pgmq.%I', 'q_' || queue)) is null then
        return null;
    end if;
    if kind = 'ready' then
        execute format(
            'select q.vt from pgmq.%I as q where q.vt <= $2 order by q.vt offset $1 limit 1',
            'q_' || queue
        ) into found_at using n - 1, clock_timestamp();
    elsif kind = 'dead' then
        execute format(
            'select d.vt from pgmq.%I as d order by d.vt offset $1 limit 1', 'q_' || queue || '_dlq'
        ) into found_at using n - 1;
    end if;
    return found_at;
end
$$;

-- Sessions of this database (other than the caller) whose open transaction
-- holds back vacuum's xmin horizon: they have a snapshot (backend_xmin) or an
-- assigned transaction id. Security definer so that the view shows every
-- role's sessions (this needs the owner to be a superuser or a member of
-- pg_read_all_stats; otherwise only the owner's own sessions are seen).
create or replace function pgmq_jobs._xmin_holders()
returns table (
    pid integer,
    usename text,
    application_name text,
    state text,
    xact_start timestamptz,
    xmin_age integer
)
language sql
stable
security definer
rows 5
set search_path = pg_catalog, pg_temp
as $$
    select
        a.pid,
        a.usename::text,
        a.application_name,
        a.state,
        a.xact_start,
        greatest(age(a.backend_xmin), age(a.backend_xid))
    from pg_catalog.pg_stat_activity as a
    where a.datname = current_database()
        and a.pid <> pg_backend_pid()
        and a.backend_type = 'client backend'
        and a.xact_start is not null
        and (a.backend_xmin is not null or a.backend_xid is not null)
    order by a.xact_start
$$;

-- Partitioned queues whose default partition holds jobs (alert
-- default_partition): pg_partman's maintenance has fallen behind the job ids.
-- Counted up to 100000 (a default partition is normally empty).
create or replace function pgmq_jobs._default_partition_jobs()
returns table (queue text, jobs bigint)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q text;
begin
    for q in select qs.queue from pgmq_jobs.queue_settings as qs where qs.partitioned order by 1 loop
        continue when pg_catalog.to_regclass(format('pgmq.%I', 'q_' || q || '_default')) is null;
        execute format(
            'select count(*) from (select from pgmq.%I limit 100000) as d', 'q_' || q || '_default'
        ) into jobs;
        if jobs > 0 then
            queue := q;
            return next;
        end if;
    end loop;
end
$$;

-- The sweep's sample of every queue table's (and DLQ's) tuple statistics,
-- taken as of at (the sweep passes its clock; a test passes the times it
-- plays), for the table_bloat alert; samples older than two hours before at
-- are dropped. pg_stat_get_* read the cumulative statistics, current to
-- about a second. Partitioned queues are sampled on their parent, which holds
-- no rows. Returns how many tables were sampled.
create or replace function pgmq_jobs._sample_tables(at timestamptz)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    sampled integer;
begin
    if at is null or not isfinite(at) then
        raise exception 'at must be a finite time, got %', coalesce(at::text, 'null')
            using errcode = '22023';
    end if;
    insert into pgmq_jobs.table_samples as t (queue, dlq, at, n_dead, n_live, written, vacuums)
    select
        qs.queue,
        r.dlq,
        _sample_tables.at,
        pg_stat_get_dead_tuples(r.rel),
        pg_stat_get_live_tuples(r.rel),
        pg_stat_get_tuples_inserted(r.rel) + pg_stat_get_tuples_updated(r.rel)
        + pg_stat_get_tuples_deleted(r.rel),
        pg_stat_get_vacuum_count(r.rel) + pg_stat_get_autovacuum_count(r.rel)
    from pgmq_jobs.queue_settings as qs
    cross join lateral (
        values
        (false, to_regclass(format('pgmq.%I', 'q_' || qs.queue))),
        (true, to_regclass(format('pgmq.%I', 'q_' || qs.queue || '_dlq')))
    ) as r (dlq, rel)
    where r.rel is not null
    on conflict on constraint table_samples_pkey do update set
        n_dead = excluded.n_dead,
        n_live = excluded.n_live,
        written = excluded.written,
        vacuums = excluded.vacuums;
    get diagnostics sampled = row_count;
    delete from pgmq_jobs.table_samples as t where t.at < _sample_tables.at - interval '2 hours';
    return sampled;
end
$$;

comment on function pgmq_jobs._sample_tables(timestamptz) is
'Record, as of at, each queue table''s and DLQ''s dead and live tuples and cumulative write and
vacuum counts in table_samples (for the table_bloat alert); drop samples older than two hours.
Called by sweep() with its clock.';

revoke all on function pgmq_jobs._queue_gauges(text, integer) from public;
revoke all on function pgmq_jobs._nth_at(text, text, bigint) from public;
revoke all on function pgmq_jobs._xmin_holders() from public;
revoke all on function pgmq_jobs._default_partition_jobs() from public;
revoke all on function pgmq_jobs._sample_tables(timestamptz) from public;
grant execute on function
    pgmq_jobs._queue_gauges(text, integer),
    pgmq_jobs._nth_at(text, text, bigint),
    pgmq_jobs._xmin_holders(),
    pgmq_jobs._default_partition_jobs()
to pgmq_jobs_admin;

-- ======================================================================
-- sql/301_queue_stats.sql
-- ======================================================================
-- 301_queue_stats.sql: view queue_stats, one row of metrics per queue, cheap at
-- any depth: gauges, outcome counts and rates, processing times, live workers.
--
-- Windows: *_1m counts from the start of the previous minute until now (60 to
-- 120 s), *_5m from the start of the minute five minutes ago (5 to 6 min), *_1h
-- likewise (60 to 61 min); rates divide by that span, so they are per second
-- over exactly what was counted. Counts come from queue_history (minutes the
-- sweep folded) plus the outcome_log rows not folded yet, read in one snapshot,
-- so they are current without waiting for a sweep and never counted twice.

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.queue_stats as
with w as (
    select
        x.t,
        pg_catalog.date_trunc('minute', x.t operator(pg_catalog.-) interval '1 minute') as since_1m,
        pg_catalog.date_trunc('minute', x.t operator(pg_catalog.-) interval '5 minutes') as since_5m,
        pg_catalog.date_trunc('minute', x.t operator(pg_catalog.-) interval '1 hour') as since_1h,
        coalesce(nullif(pg_catalog.current_setting('pgmq_jobs.stats_count_cap', true), '')::integer, 20000) as cap
    from (select pg_catalog.statement_timestamp() as t) as x
),

logged as (
    select
        o.queue,
        coalesce(pg_catalog.sum(o.completed) filter (where o.at operator(pg_catalog.>=) w.since_1m), 0) as completed_1m,
        coalesce(pg_catalog.sum(o.retried) filter (where o.at operator(pg_catalog.>=) w.since_1m), 0) as retried_1m,
        coalesce(pg_catalog.sum(o.dead operator(pg_catalog.+) o.expired) filter (where o.at operator(pg_catalog.>=) w.since_1m), 0) as dead_1m,
        coalesce(pg_catalog.sum(o.completed) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as completed_5m,
        coalesce(pg_catalog.sum(o.retried) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as retried_5m,
        coalesce(pg_catalog.sum(o.dead operator(pg_catalog.+) o.expired) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as dead_5m,
        coalesce(pg_catalog.sum(o.completed) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as completed_1h,
        coalesce(pg_catalog.sum(o.retried) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as retried_1h,
        coalesce(pg_catalog.sum(o.dead operator(pg_catalog.+) o.expired) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as dead_1h,
        coalesce(pg_catalog.sum(o.duration_count) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as timed_5m,
        coalesce(pg_catalog.sum(o.duration_ms_sum) filter (where o.at operator(pg_catalog.>=) w.since_5m), 0) as ms_5m,
        coalesce(pg_catalog.sum(o.duration_count) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as timed_1h,
        coalesce(pg_catalog.sum(o.duration_ms_sum) filter (where o.at operator(pg_catalog.>=) w.since_1h), 0) as ms_1h,
        -- Every row of the log is not folded yet: all of it adds to the total.
        coalesce(pg_catalog.sum(o.enqueued), 0) as enqueued_log
    from pgmq_jobs.outcome_log as o
    cross join w
    group by o.queue
),

-- Materialized: referenced inside the per-queue p95 subquery, it would
-- otherwise be computed again for every queue.
log_buckets as materialized (
    select
        o.queue,
        b.i,
        pg_catalog.sum(b.n) as n
    from pgmq_jobs.outcome_log as o
    cross join w
    cross join lateral pg_catalog.unnest(o.duration_buckets) with ordinality as b (n, i)
    where o.at operator(pg_catalog.>=) w.since_5m and o.duration_buckets is not null
    group by o.queue, b.i
),

counted as (
    select
        qs.queue,
        w.t,
        g.*,
        h.completed_1m operator(pg_catalog.+) coalesce(l.completed_1m, 0) as completed_1m,
        h.retried_1m operator(pg_catalog.+) coalesce(l.retried_1m, 0) as retried_1m,
        h.dead_1m operator(pg_catalog.+) coalesce(l.dead_1m, 0) as dead_1m,
        h.completed_5m operator(pg_catalog.+) coalesce(l.completed_5m, 0) as completed_5m,
        h.retried_5m operator(pg_catalog.+) coalesce(l.retried_5m, 0) as retried_5m,
        h.dead_5m operator(pg_catalog.+) coalesce(l.dead_5m, 0) as dead_5m,
        h.completed_1h operator(pg_catalog.+) coalesce(l.completed_1h, 0) as completed_1h,
        h.retried_1h operator(pg_catalog.+) coalesce(l.retried_1h, 0) as retried_1h,
        h.dead_1h operator(pg_catalog.+) coalesce(l.dead_1h, 0) as dead_1h,
        h.timed_5m operator(pg_catalog.+) coalesce(l.timed_5m, 0) as timed_5m,
        h.ms_5m operator(pg_catalog.+) coalesce(l.ms_5m, 0) as ms_5m,
        h.timed_1h operator(pg_catalog.+) coalesce(l.timed_1h, 0) as timed_1h,
        h.ms_1h operator(pg_catalog.+) coalesce(l.ms_1h, 0) as ms_1h,
        coalesce(l.enqueued_log, 0) as enqueued_log,
        (
            -- The 95th percentile of the 5m window: the histogram bucket that
            -- holds it (from the folded minutes and the log), interpolated
            -- linearly inside it. Buckets (sql/020's _duration_histogram), in
            -- order of duration: 26 is [0, 2^-10) ms, i (27..35) is
            -- [2^(i-37), 2^(i-36)) ms, 1 is [0.5, 1) ms ([0, 1) ms when only
            -- 0.1.0's 25 buckets are there), i (2..24) is [2^(i-2), 2^(i-1))
            -- ms, 25 is 2^23 ms and up (its lower bound is reported).
            select case
                when y.i operator(pg_catalog.=) 25 then pg_catalog.power(2, 23)
                else y.lo operator(pg_catalog.+) ((y.hi operator(pg_catalog.-) y.lo) operator(pg_catalog.*) y.frac)
            end
            from (
                select
                    z.i,
                    z.lo,
                    z.hi,
                    ((0.95 operator(pg_catalog.*) z.total) operator(pg_catalog.-) (z.cum operator(pg_catalog.-) z.n)) operator(pg_catalog./) z.n as frac
                from (
                    select
                        x.i,
                        x.n,
                        pg_catalog.sum(x.n) over (order by x.ord) as cum,
                        pg_catalog.sum(x.n) over () as total,
                        case
                            when x.i operator(pg_catalog.=) 26 then 0
                            when x.i operator(pg_catalog.>) 26 then pg_catalog.power(2, x.i operator(pg_catalog.-) 37)
                            when x.i operator(pg_catalog.>) 1 then pg_catalog.power(2, x.i operator(pg_catalog.-) 2)
                            when pg_catalog.max(x.i) over () operator(pg_catalog.<=) 25 then 0
                            else 0.5
                        end as lo,
                        case
                            when x.i operator(pg_catalog.>=) 26 then pg_catalog.power(2, x.i operator(pg_catalog.-) 36)
                            else pg_catalog.power(2, x.i operator(pg_catalog.-) 1)
                        end as hi
                    from (
                        select
                            u.i,
                            case
                                when u.i operator(pg_catalog.>=) 26 then u.i operator(pg_catalog.-) 26
                                else u.i operator(pg_catalog.+) 9
                            end as ord,
                            pg_catalog.sum(u.n) as n
                        from (
                            select b.i, b.n
                            from pgmq_jobs.queue_history as hb
                            cross join lateral pg_catalog.unnest(hb.duration_buckets) with ordinality as b (n, i)
                            where hb.queue operator(pg_catalog.=) qs.queue and hb.minute operator(pg_catalog.>=) w.since_5m
                            union all
                            select lb.i, lb.n from log_buckets as lb
                            where lb.queue operator(pg_catalog.=) qs.queue
                        ) as u
                        group by u.i
                    ) as x
                ) as z
                where z.n operator(pg_catalog.>) 0 and z.cum operator(pg_catalog.>=) (0.95 operator(pg_catalog.*) z.total)
                    and (z.cum operator(pg_catalog.-) z.n) operator(pg_catalog.<) (0.95 operator(pg_catalog.*) z.total)
            ) as y
        )::double precision as p95_ms_5m,
        extract(epoch from w.t operator(pg_catalog.-) w.since_1m)::double precision as span_1m,
        extract(epoch from w.t operator(pg_catalog.-) w.since_5m)::double precision as span_5m,
        extract(epoch from w.t operator(pg_catalog.-) w.since_1h)::double precision as span_1h
    from pgmq_jobs.queue_settings as qs
    cross join w
    cross join lateral pgmq_jobs._queue_gauges(qs.queue, w.cap) as g
    cross join lateral (
        select
            coalesce(pg_catalog.sum(hh.completed) filter (where hh.minute operator(pg_catalog.>=) w.since_1m), 0) as completed_1m,
            coalesce(pg_catalog.sum(hh.retried) filter (where hh.minute operator(pg_catalog.>=) w.since_1m), 0) as retried_1m,
            coalesce(pg_catalog.sum(hh.dead operator(pg_catalog.+) hh.expired) filter (where hh.minute operator(pg_catalog.>=) w.since_1m), 0) as dead_1m,
            coalesce(pg_catalog.sum(hh.completed) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as completed_5m,
            coalesce(pg_catalog.sum(hh.retried) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as retried_5m,
            coalesce(pg_catalog.sum(hh.dead operator(pg_catalog.+) hh.expired) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as dead_5m,
            coalesce(pg_catalog.sum(hh.completed), 0) as completed_1h,
            coalesce(pg_catalog.sum(hh.retried), 0) as retried_1h,
            coalesce(pg_catalog.sum(hh.dead operator(pg_catalog.+) hh.expired), 0) as dead_1h,
            coalesce(pg_catalog.sum(hh.duration_count) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as timed_5m,
            coalesce(pg_catalog.sum(hh.duration_ms_sum) filter (where hh.minute operator(pg_catalog.>=) w.since_5m), 0) as ms_5m,
            coalesce(pg_catalog.sum(hh.duration_count), 0) as timed_1h,
            coalesce(pg_catalog.sum(hh.duration_ms_sum), 0) as ms_1h
        from pgmq_jobs.queue_history as hh
        where hh.queue operator(pg_catalog.=) qs.queue and hh.minute operator(pg_catalog.>=) w.since_1h
    ) as h
    left join logged as l on qs.queue operator(pg_catalog.=) l.queue
)

select
    c.queue,
    c.ready,
    c.in_flight,
    c.delayed,
    c.dead,
    c.t operator(pg_catalog.-) c.oldest_ready_at as oldest_ready_age,
    c.completed_1m::bigint as completed_1m,
    c.retried_1m::bigint as retried_1m,
    c.dead_1m::bigint as dead_lettered_1m,
    c.completed_5m::bigint as completed_5m,
    c.retried_5m::bigint as retried_5m,
    c.dead_5m::bigint as dead_lettered_5m,
    c.completed_1h::bigint as completed_1h,
    c.retried_1h::bigint as retried_1h,
    c.dead_1h::bigint as dead_lettered_1h,
    c.completed_1m operator(pg_catalog./) c.span_1m as completed_rate_1m,
    c.retried_1m operator(pg_catalog./) c.span_1m as retried_rate_1m,
    c.dead_1m operator(pg_catalog./) c.span_1m as dead_lettered_rate_1m,
    c.completed_5m operator(pg_catalog./) c.span_5m as completed_rate_5m,
    c.retried_5m operator(pg_catalog./) c.span_5m as retried_rate_5m,
    c.dead_5m operator(pg_catalog./) c.span_5m as dead_lettered_rate_5m,
    c.completed_1h operator(pg_catalog./) c.span_1h as completed_rate_1h,
    c.retried_1h operator(pg_catalog./) c.span_1h as retried_rate_1h,
    c.dead_1h operator(pg_catalog./) c.span_1h as dead_lettered_rate_1h,
    (c.retried_5m operator(pg_catalog./) nullif(c.completed_5m operator(pg_catalog.+) c.retried_5m operator(pg_catalog.+) c.dead_5m, 0))::double precision as retry_rate_5m,
    (c.retried_1h operator(pg_catalog./) nullif(c.completed_1h operator(pg_catalog.+) c.retried_1h operator(pg_catalog.+) c.dead_1h, 0))::double precision as retry_rate_1h,
    c.timed_5m::bigint as timed_jobs_5m,
    (c.ms_5m operator(pg_catalog./) nullif(c.timed_5m, 0))::double precision as avg_processing_ms_5m,
    c.p95_ms_5m as p95_processing_ms_5m,
    (c.ms_1h operator(pg_catalog./) nullif(c.timed_1h, 0))::double precision as avg_processing_ms_1h,
    (
        select pg_catalog.count(*) from pgmq_jobs.workers as wk
        where wk.status operator(pg_catalog.=) 'alive' and c.queue operator(pg_catalog.=) any(wk.queues)
    ) as live_workers,
    (c.enqueued_total operator(pg_catalog.+) c.enqueued_log)::bigint as enqueued_total,
    c.ready_estimated,
    coalesce(c.dead_estimated, false) as dead_estimated,
    c.t as measured_at
from counted as c;
-- noqa: enable=LT01

comment on view pgmq_jobs.queue_stats is
'Metrics of every queue, cheap at any depth. ready / in_flight / delayed / dead: jobs visible
now, claimed and running, waiting for a later time (delay, retry backoff, group order), and dead
letters; each is an exact count up to pgmq_jobs.stats_count_cap rows (a setting, default 20000)
and beyond that an ESTIMATE from the table''s live-tuple statistics (ready_estimated says so for
ready and delayed, dead_estimated for dead). oldest_ready_age: how long the oldest
ready job has been waiting. completed / retried / dead_lettered (failed or expired to the DLQ)
_1m, _5m, _1h: exact counts from the start of the previous minute (1m), of the minute 5 minutes
ago (5m) or an hour ago (1h) until now, from queue_history plus the outcome log not yet folded;
*_rate_*: the same per second over that span (60-120 s, 5-6 min, 60-61 min). retry_rate_*:
retried / (completed + retried + dead_lettered). timed_jobs_5m, avg_processing_ms_5m,
p95_processing_ms_5m, avg_processing_ms_1h: handler durations that workers passed to complete
(durations_ms) over the 5m / 1h window; the average is exact, p95 is an ESTIMATE interpolated
inside its power-of-two histogram bucket (within a factor of two, from 2^-10 ms, about a
microsecond, up); null when none reported.
live_workers: workers alive that serve the queue. enqueued_total: jobs enqueued by committed
transactions (enqueue, enqueue_batch, schedules; not replays) since the queue was created, or
since the upgrade to 0.2.0 for an older queue: a rolled-back enqueue is never counted.';

revoke all on pgmq_jobs.queue_stats from public;
grant select on pgmq_jobs.queue_stats to pgmq_jobs_admin;

-- ======================================================================
-- sql/302_alert_thresholds.sql
-- ======================================================================
-- 302_alert_thresholds.sql: the thresholds of the alerts view (a default per
-- alert, optionally one per queue) and set_alert_threshold to change them.

create table if not exists pgmq_jobs.alert_thresholds (
    alert text not null,
    queue text,
    threshold double precision not null,
    updated_at timestamptz not null default pg_catalog.now(),
    -- Constraints are bound when created, under that session's search_path: the
    -- operators are schema-qualified so that nothing planted is bound into them
    -- (issue 18, finding 2: float8 >= int4 has no exact match in pg_catalog).
    -- sql/upgrades/0.1.0--0.2.0.sql re-creates both on existing databases.
    constraint alert_thresholds_alert_check check (
        alert operator(pg_catalog.=) any( -- noqa: LT01
            array[
                'queue_depth', 'dead_letters', 'low_throughput', 'stalled_workers', 'oldest_job_age',
                'xmin_horizon', 'table_bloat', 'wraparound'
            ]
        )
    ),
    constraint alert_thresholds_threshold_check check (threshold operator(pg_catalog.>=) 0::double precision) -- noqa: LT01
);
create unique index if not exists alert_thresholds_alert_queue_idx
on pgmq_jobs.alert_thresholds (alert, coalesce(queue, ''));
comment on table pgmq_jobs.alert_thresholds is
'Alert thresholds: queue null is the default of an alert, a queue''s row overrides it; change
them with pgmq_jobs.set_alert_threshold';

-- The defaults (a re-install keeps thresholds already set).
insert into pgmq_jobs.alert_thresholds (alert, queue, threshold)
values
('queue_depth', null, 10000),
('dead_letters', null, 100),
('low_throughput', null, 10),
('stalled_workers', null, 0),
('oldest_job_age', null, 300),
('xmin_horizon', null, 300),
('table_bloat', null, 0.5),
('wraparound', null, 0.5)
on conflict do nothing;

create or replace function pgmq_jobs.set_alert_threshold(
    alert text,
    threshold double precision,
    queue text default null
)
returns double precision
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    known text[] := array[
        'queue_depth', 'dead_letters', 'low_throughput', 'stalled_workers', 'oldest_job_age',
        'xmin_horizon', 'table_bloat', 'wraparound'
    ];
    previous double precision;
    effective double precision;
begin
    if alert is null or not alert = any(known) then
        raise exception 'unknown alert %: use one of %', coalesce(quote_literal(alert), 'null'),
            array_to_string(known, ', ')
            using errcode = '22023';
    end if;
    if threshold is not null and (threshold < 0 or threshold = 'NaN'::double precision) then
        raise exception 'threshold must be a non-negative number (''infinity'' turns the alert off), got %',
            threshold
            using errcode = '22023';
    end if;
    if queue is not null then
        if alert in ('xmin_horizon', 'wraparound') then
            raise exception 'alert % is about the whole database and has no per-queue threshold', alert
                using errcode = '22023';
        end if;
        perform pgmq_jobs._settings(queue);
    elsif threshold is null then
        raise exception 'threshold must not be null for the default of alert % (null removes a queue''s own threshold)',
            alert
            using errcode = '22004';
    end if;

    select t.threshold into previous
    from pgmq_jobs.alert_thresholds as t
    where t.alert = set_alert_threshold.alert and t.queue is not distinct from set_alert_threshold.queue;

    if threshold is null then
        delete from pgmq_jobs.alert_thresholds as t
        where t.alert = set_alert_threshold.alert and t.queue = set_alert_threshold.queue;
    else
        update pgmq_jobs.alert_thresholds as t
        set threshold = set_alert_threshold.threshold, updated_at = clock_timestamp()
        where t.alert = set_alert_threshold.alert
            and t.queue is not distinct from set_alert_threshold.queue;
        if not found then
            insert into pgmq_jobs.alert_thresholds (alert, queue, threshold, updated_at)
            values (set_alert_threshold.alert, set_alert_threshold.queue, set_alert_threshold.threshold,
                clock_timestamp());
        end if;
    end if;

    select coalesce(
        (select t.threshold from pgmq_jobs.alert_thresholds as t
            where t.alert = set_alert_threshold.alert and t.queue = set_alert_threshold.queue),
        (select t.threshold from pgmq_jobs.alert_thresholds as t
            where t.alert = set_alert_threshold.alert and t.queue is null)
    ) into effective;
    perform pgmq_jobs._audit(
        queue, 'set_alert_threshold',
        jsonb_build_object('alert', alert, 'threshold', threshold, 'previous', previous)
    );
    return effective;
end
$$;

comment on function pgmq_jobs.set_alert_threshold(text, double precision, text) is
'Set the threshold of an alert of the alerts view: the default for every queue (queue null), or
one queue''s own (threshold null removes it, so the default applies again). Alerts: queue_depth
(ready jobs), dead_letters, low_throughput (completions per second while jobs wait),
stalled_workers (how many may be stalled), oldest_job_age (seconds), table_bloat (dead-tuple
ratio 0..1), xmin_horizon (seconds) and wraparound (share of autovacuum_freeze_max_age); the
last two have no per-queue value. ''infinity'' turns an alert off. Returns the threshold now in
effect for that queue (or the default).';

revoke all on pgmq_jobs.alert_thresholds from public;
grant select on pgmq_jobs.alert_thresholds to pgmq_jobs_admin;

-- ======================================================================
-- sql/303_alerts.sql
-- ======================================================================
-- 303_alerts.sql: view alerts, one row per alert condition firing now: queue
-- health from queue_stats and workers, database health from the statistics
-- views. Thresholds come from alert_thresholds (set_alert_threshold).

-- Every operator and function below is schema-qualified (operator(pg_catalog.=),
-- pg_catalog.format(...)): a view is bound when it is created, under the
-- search_path of that session, and an exact-match overload planted in any
-- schema of that path would otherwise be bound into it for good and run with
-- the view owner's rights (issue 18, finding 2). sqlfluff misreads
-- operator(pg_catalog.>=), hence the LT01 exemption.
-- noqa: disable=LT01
create or replace view pgmq_jobs.alerts as
with stats as (
    select s.* from pgmq_jobs.queue_stats as s
),

limits as (
    select
        d.alert,
        qs.queue,
        coalesce(o.threshold, d.threshold) as threshold
    from pgmq_jobs.alert_thresholds as d
    cross join pgmq_jobs.queue_settings as qs
    left join pgmq_jobs.alert_thresholds as o on d.alert operator(pg_catalog.=) o.alert and qs.queue operator(pg_catalog.=) o.queue
    where d.queue is null
),

defaults as (
    select d.alert, d.threshold from pgmq_jobs.alert_thresholds as d
    where d.queue is null
),

stalled as (
    select
        qn.queue,
        pg_catalog.count(*) as n,
        pg_catalog.min(wk.last_seen_at operator(pg_catalog.+) (wk.heartbeat_interval operator(pg_catalog.*) 3)) as since,
        pg_catalog.jsonb_agg(wk.worker_id order by wk.worker_id) as workers,
        pg_catalog.max(wk.heartbeat_interval operator(pg_catalog.*) 3) as hold
    from pgmq_jobs.workers as wk
    cross join lateral pg_catalog.unnest(wk.queues) as qn (queue)
    where wk.status operator(pg_catalog.=) 'stale'
        or (
            wk.status operator(pg_catalog.=) 'gone' and wk.stopped_at is null
            and wk.last_seen_at operator(pg_catalog.>) (pg_catalog.statement_timestamp() operator(pg_catalog.-) interval '1 hour')
        )
    group by qn.queue
),

holders as (
    select
        h.*,
        pg_catalog.count(*) over () as sessions
    from pgmq_jobs._xmin_holders() as h
    order by h.xact_start
    limit 1
),

-- table_bloat: dead tuples that persist. The floor (dead tuples) and how long
-- the condition must hold come from the settings pgmq_jobs.table_bloat_min_dead_tuples
-- (default 10000) and pgmq_jobs.table_bloat_minutes (default 10).
bloat_settings as (
    select
        coalesce(nullif(pg_catalog.current_setting('pgmq_jobs.table_bloat_min_dead_tuples', true), '')::bigint, 10000) as floor,
        pg_catalog.make_interval(
            mins => coalesce(nullif(pg_catalog.current_setting('pgmq_jobs.table_bloat_minutes', true), '')::integer, 10)
        ) as hold,
        pg_catalog.statement_timestamp() as t
),

-- Each queue table and DLQ now, from the cumulative statistics (found by
-- name in pg_class: to_regclass would need USAGE on schema pgmq).
bloat_now as (
    select
        l.queue,
        l.threshold,
        c.relname operator(pg_catalog.<>) ('q_' operator(pg_catalog.||) l.queue) as dlq,
        c.relname::text as relname,
        c.oid as rel,
        pg_catalog.pg_stat_get_dead_tuples(c.oid) as n_dead,
        pg_catalog.pg_stat_get_live_tuples(c.oid) as n_live,
        pg_catalog.pg_stat_get_tuples_inserted(c.oid) operator(pg_catalog.+) pg_catalog.pg_stat_get_tuples_updated(c.oid)
        operator(pg_catalog.+) pg_catalog.pg_stat_get_tuples_deleted(c.oid) as written,
        pg_catalog.pg_stat_get_vacuum_count(c.oid) operator(pg_catalog.+) pg_catalog.pg_stat_get_autovacuum_count(c.oid) as vacuums
    from limits as l
    inner join pg_catalog.pg_class as c
        on c.relname operator(pg_catalog.=) any(array[
            'q_' operator(pg_catalog.||) l.queue, 'q_' operator(pg_catalog.||) l.queue operator(pg_catalog.||) '_dlq'
        ]::name [])
    inner join pg_catalog.pg_namespace as n
        on c.relnamespace operator(pg_catalog.=) n.oid and n.nspname operator(pg_catalog.=) 'pgmq'
    where l.alert operator(pg_catalog.=) 'table_bloat'
),

-- The sweep's samples (table_samples) of the last hour and the hold, then
-- now, each judged: the condition holds when the dead tuples are at the floor
-- or above and over the threshold share of the rows, unless a vacuum since
-- the sample before cleared what was dead then (the dead tuples are no more
-- than the rows written since, so all of them are newer: a healthy table
-- between two autovacuums). A sample with none before it is not judged.
bloat_series as (
    select
        x.queue,
        x.dlq,
        x.at,
        x.n_dead operator(pg_catalog.>=) bs.floor
        and (x.n_dead::double precision operator(pg_catalog./) nullif(x.n_dead operator(pg_catalog.+) x.n_live, 0)) operator(pg_catalog.>) x.threshold
        -- The first sample of the window has none before it: not judged.
        and coalesce(not (
            x.vacuums operator(pg_catalog.>) pg_catalog.lag(x.vacuums) over w
            and x.n_dead operator(pg_catalog.<=) (x.written operator(pg_catalog.-) pg_catalog.lag(x.written) over w)
        ), false) as holds
    from (
        select b.queue, b.threshold, b.dlq, ts.at, ts.n_dead, ts.n_live, ts.written, ts.vacuums
        from bloat_now as b
        cross join bloat_settings as bs2
        inner join pgmq_jobs.table_samples as ts
            on b.queue operator(pg_catalog.=) ts.queue and b.dlq operator(pg_catalog.=) ts.dlq
        where ts.at operator(pg_catalog.>=) (bs2.t operator(pg_catalog.-) (bs2.hold operator(pg_catalog.+) interval '1 hour'))
            and ts.at operator(pg_catalog.<) bs2.t
        union all
        select b.queue, b.threshold, b.dlq, bs2.t, b.n_dead, b.n_live, b.written, b.vacuums
        from bloat_now as b
        cross join bloat_settings as bs2
    ) as x
    cross join bloat_settings as bs
    window w as (partition by x.queue, x.dlq order by x.at)
),

-- Since when the condition has held without a break (null: not now).
bloat_runs as (
    select
        z.queue,
        z.dlq,
        pg_catalog.min(z.at) filter (where z.at operator(pg_catalog.>) coalesce(z.last_ok, '-infinity'::timestamptz)) as since
    from (
        select
            y.queue,
            y.dlq,
            y.at,
            pg_catalog.max(y.at) filter (where not y.holds) over (partition by y.queue, y.dlq) as last_ok
        from bloat_series as y
    ) as z
    group by z.queue, z.dlq
)

select
    'queue_depth'::text as alert,
    s.queue,
    s.ready::double precision as value,
    l.threshold,
    coalesce(
        case when l.threshold operator(pg_catalog.<) 1000000 then pgmq_jobs._nth_at(s.queue, 'ready', pg_catalog.floor(l.threshold)::bigint operator(pg_catalog.+) 1) end,
        s.measured_at operator(pg_catalog.-) s.oldest_ready_age
    ) as since,
    pg_catalog.format('queue %s has %s%s jobs ready (threshold %s)', s.queue,
        case when s.ready_estimated then 'about ' else '' end, s.ready, l.threshold) as message,
    pg_catalog.jsonb_build_object('ready', s.ready, 'estimated', s.ready_estimated, 'in_flight', s.in_flight) as details,
    interval '0' as must_hold
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'queue_depth'
where s.ready operator(pg_catalog.>) l.threshold

union all

select
    'dead_letters',
    s.queue,
    s.dead::double precision,
    l.threshold,
    case when l.threshold operator(pg_catalog.<) 1000000 then pgmq_jobs._nth_at(s.queue, 'dead', pg_catalog.floor(l.threshold)::bigint operator(pg_catalog.+) 1) end,
    pg_catalog.format('queue %s has %s%s dead letters (threshold %s)', s.queue,
        case when s.dead_estimated then 'about ' else '' end, s.dead, l.threshold),
    pg_catalog.jsonb_build_object('dead', s.dead, 'estimated', s.dead_estimated, 'dead_lettered_1h', s.dead_lettered_1h),
    interval '0'
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'dead_letters'
where s.dead operator(pg_catalog.>) l.threshold

union all

select
    'low_throughput',
    s.queue,
    s.completed_rate_1m,
    l.threshold,
    s.measured_at operator(pg_catalog.-) s.oldest_ready_age operator(pg_catalog.+) interval '1 minute',
    pg_catalog.format('queue %s completes %s jobs/s while %s jobs wait, the oldest for %s s (threshold %s jobs/s)',
        s.queue, pg_catalog.round(s.completed_rate_1m::numeric, 2), s.ready,
        pg_catalog.round(extract(epoch from s.oldest_ready_age)), l.threshold),
    pg_catalog.jsonb_build_object(
        'ready', s.ready, 'oldest_ready_seconds', extract(epoch from s.oldest_ready_age),
        'live_workers', s.live_workers
    ),
    interval '1 minute'
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'low_throughput'
where s.ready operator(pg_catalog.>) 0 and s.oldest_ready_age operator(pg_catalog.>) interval '1 minute' and s.completed_rate_1m operator(pg_catalog.<) l.threshold

union all

select
    'oldest_job_age',
    s.queue,
    extract(epoch from s.oldest_ready_age)::double precision,
    l.threshold,
    s.measured_at operator(pg_catalog.-) s.oldest_ready_age operator(pg_catalog.+) pg_catalog.make_interval(secs => l.threshold),
    pg_catalog.format('the oldest ready job of queue %s has waited %s s (threshold %s s)', s.queue,
        pg_catalog.round(extract(epoch from s.oldest_ready_age)), l.threshold),
    pg_catalog.jsonb_build_object('ready', s.ready, 'live_workers', s.live_workers),
    pg_catalog.make_interval(secs => l.threshold)
from stats as s
inner join limits as l on s.queue operator(pg_catalog.=) l.queue and l.alert operator(pg_catalog.=) 'oldest_job_age'
where extract(epoch from s.oldest_ready_age) operator(pg_catalog.>) l.threshold

union all

select
    'stalled_workers',
    x.queue,
    x.n::double precision,
    th.threshold,
    x.since,
    pg_catalog.format('%s worker(s) of queue %s stopped sending heartbeats: %s', x.n, x.queue,
        (select pg_catalog.string_agg(v, ', ') from pg_catalog.jsonb_array_elements_text(x.workers) as v)),
    pg_catalog.jsonb_build_object('workers', x.workers),
    x.hold
from stalled as x
cross join lateral (
    select coalesce(
        (select t.threshold from pgmq_jobs.alert_thresholds as t
            where t.alert operator(pg_catalog.=) 'stalled_workers' and t.queue operator(pg_catalog.=) x.queue),
        (
            select d.threshold from defaults as d
            where d.alert operator(pg_catalog.=) 'stalled_workers'
        )
    ) as threshold
) as th
where x.n operator(pg_catalog.>) th.threshold

union all

select
    'xmin_horizon',
    null,
    extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start)::double precision,
    d.threshold,
    h.xact_start operator(pg_catalog.+) pg_catalog.make_interval(secs => d.threshold),
    pg_catalog.format('session %s (%s, %s) has held a transaction open for %s s, holding back vacuum',
        h.pid, coalesce(nullif(h.application_name, ''), h.usename), h.state,
        pg_catalog.round(extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start))),
    pg_catalog.jsonb_build_object(
        'pid', h.pid, 'user', h.usename, 'application_name', h.application_name, 'state', h.state,
        'xact_start', h.xact_start, 'xmin_age', h.xmin_age, 'sessions', h.sessions
    ),
    pg_catalog.make_interval(secs => d.threshold)
from holders as h
inner join defaults as d on d.alert operator(pg_catalog.=) 'xmin_horizon'
where extract(epoch from pg_catalog.statement_timestamp() operator(pg_catalog.-) h.xact_start) operator(pg_catalog.>) d.threshold

union all

select
    'table_bloat',
    b.queue,
    b.n_dead::double precision operator(pg_catalog./) (b.n_live operator(pg_catalog.+) b.n_dead),
    b.threshold,
    r.since,
    pg_catalog.format('table pgmq.%s has held at least %s dead tuples over %s%% of its rows for %s minutes,'
        ' and vacuum has not removed them: now %s dead, %s live (%s%%)',
        b.relname, bs.floor, pg_catalog.round((100 operator(pg_catalog.*) b.threshold)::numeric),
        pg_catalog.floor(extract(epoch from bs.t operator(pg_catalog.-) r.since) operator(pg_catalog./) 60),
        b.n_dead, b.n_live,
        pg_catalog.round((100.0 operator(pg_catalog.*) b.n_dead) operator(pg_catalog./) (b.n_live operator(pg_catalog.+) b.n_dead))),
    pg_catalog.jsonb_build_object(
        'table', 'pgmq.' operator(pg_catalog.||) b.relname, 'n_dead_tup', b.n_dead, 'n_live_tup', b.n_live,
        'min_dead_tuples', bs.floor,
        'last_autovacuum', pg_catalog.pg_stat_get_last_autovacuum_time(b.rel),
        'last_vacuum', pg_catalog.pg_stat_get_last_vacuum_time(b.rel)
    ),
    bs.hold
from bloat_now as b
cross join bloat_settings as bs
inner join bloat_runs as r on b.queue operator(pg_catalog.=) r.queue and b.dlq operator(pg_catalog.=) r.dlq
where r.since operator(pg_catalog.<=) (bs.t operator(pg_catalog.-) bs.hold)

union all

select
    'wraparound',
    null,
    pg_catalog.age(db.datfrozenxid)::double precision operator(pg_catalog./) pg_catalog.current_setting('autovacuum_freeze_max_age')::double precision,
    d.threshold,
    null::timestamptz,
    pg_catalog.format('database %s is %s transactions from its oldest unfrozen one, %s%% of autovacuum_freeze_max_age',
        db.datname, pg_catalog.age(db.datfrozenxid),
        pg_catalog.round(
            (100.0 operator(pg_catalog.*) pg_catalog.age(db.datfrozenxid))
            operator(pg_catalog./) pg_catalog.current_setting('autovacuum_freeze_max_age')::numeric
        )),
    pg_catalog.jsonb_build_object(
        'database', db.datname, 'xid_age', pg_catalog.age(db.datfrozenxid),
        'autovacuum_freeze_max_age', pg_catalog.current_setting('autovacuum_freeze_max_age')::bigint
    ),
    interval '0'
from pg_catalog.pg_database as db
inner join defaults as d on d.alert operator(pg_catalog.=) 'wraparound'
where db.datname operator(pg_catalog.=) pg_catalog.current_database()
    and pg_catalog.age(db.datfrozenxid)::double precision
    operator(pg_catalog./) pg_catalog.current_setting('autovacuum_freeze_max_age')::double precision operator(pg_catalog.>) d.threshold

union all

select
    'default_partition',
    p.queue,
    p.jobs::double precision,
    0::double precision,
    null::timestamptz,
    pg_catalog.format('partitioned queue %s has %s job(s) in its default partition: pg_partman''s maintenance'
        ' has fallen behind (run pgmq_jobs._partman_maintenance(), or check pg_cron job pgmq_jobs_partman)',
        p.queue, p.jobs),
    pg_catalog.jsonb_build_object('table', pg_catalog.format('pgmq.q_%s_default', p.queue), 'jobs', p.jobs),
    interval '0'
from pgmq_jobs._default_partition_jobs() as p;
-- noqa: enable=LT01

comment on view pgmq_jobs.alerts is
'Alert conditions firing now, one row each: alert, queue (null for the database), value,
threshold (alert_thresholds: per queue, else the default; set_alert_threshold), since (when it
started, from the data: the (threshold+1)-th oldest ready job or dead letter, when the oldest
job crossed the age, the missed heartbeats, the transaction start, the first sweep sample of a
table''s bloat; null when unknown), a message, details, and must_hold: how long the condition
must hold before the alert fires (0: at once). queue_depth: ready jobs > threshold (10000), at
once. dead_letters: dead letters > 100, at once. low_throughput: completions per second over
the 1m window < 10 while ready jobs have waited over a minute (must hold 1 minute).
oldest_job_age: the oldest ready job has waited more seconds than the threshold (300; must hold
that long). stalled_workers: more workers of the queue than the threshold (0) missed three
heartbeats or went silent within the hour without a clean stop (must hold three heartbeat
intervals). xmin_horizon: a session of this database has held a snapshot or transaction id for
more seconds than the threshold (300; idle-in-transaction sessions included; must hold that
long), holding back vacuum. table_bloat: a queue''s table (or its DLQ) has held at least
pgmq_jobs.table_bloat_min_dead_tuples dead tuples (a setting, default 10000) making up more than
the threshold share (0.5) of its rows, at every sweep sample for pgmq_jobs.table_bloat_minutes
(default 10) and now, with no vacuum in between clearing them (a healthy queue''s dead tuples
between two autovacuums never fire it); it needs the sweep''s samples. wraparound:
age(datfrozenxid) is past the threshold share (0.5) of autovacuum_freeze_max_age, at once.
default_partition: a partitioned queue''s default partition holds jobs (threshold 0, fixed),
i.e. partition maintenance has fallen behind, at once.';

revoke all on pgmq_jobs.alerts from public;
grant select on pgmq_jobs.alerts to pgmq_jobs_admin;

-- ======================================================================
-- sql/304_outcome_totals.sql
-- ======================================================================
-- 304_outcome_totals.sql: outcome_totals, cumulative outcome counts per queue
-- since a time: the counters of the Prometheus exporter.

create or replace function pgmq_jobs.outcome_totals(since timestamptz)
returns table (
    queue text,
    completed bigint,
    retried bigint,
    dead bigint,
    expired bigint
)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    -- Folded minutes from queue_history plus the outcome log not folded yet,
    -- in one snapshot: the sweep moves rows from one to the other within a
    -- statement, so a total never drops. since is rounded down to its minute.
    select
        qs.queue,
        (coalesce(h.completed, 0) + coalesce(o.completed, 0))::bigint,
        (coalesce(h.retried, 0) + coalesce(o.retried, 0))::bigint,
        (coalesce(h.dead, 0) + coalesce(o.dead, 0))::bigint,
        (coalesce(h.expired, 0) + coalesce(o.expired, 0))::bigint
    from pgmq_jobs.queue_settings as qs
    cross join lateral (
        select sum(x.completed) as completed, sum(x.retried) as retried, sum(x.dead) as dead,
            sum(x.expired) as expired
        from pgmq_jobs.queue_history as x
        where x.queue = qs.queue and x.minute >= date_trunc('minute', outcome_totals.since)
    ) as h
    cross join lateral (
        select sum(x.completed) as completed, sum(x.retried) as retried, sum(x.dead) as dead,
            sum(x.expired) as expired
        from pgmq_jobs.outcome_log as x
        where x.queue = qs.queue and x.at >= date_trunc('minute', outcome_totals.since)
    ) as o
    order by qs.queue
$$;

comment on function pgmq_jobs.outcome_totals(timestamptz) is
'Outcome counts of every queue since a time (rounded down to its minute): completed, retried,
dead (failed into the DLQ) and expired (routed to the DLQ after a lost last delivery), from
queue_history plus the outcome log not folded yet. Monotonic while history is kept: the
Prometheus exporter serves them as counters since its start.';

-- ======================================================================
-- sql/890_queue_tables.sql
-- ======================================================================
-- 890_queue_tables.sql: every existing queue gets the indexes and privileges
-- a new queue is created with (sql/055_private_queue_tables.sql), and its
-- handler's pg_cron job this release's command. On a fresh
-- install there is no queue yet; on an upgrade this brings the queues of an
-- earlier release up to date. Idempotent: an index that exists is kept.

do $queue_tables$
declare
    s record;
begin
    for s in
        select qs.queue, qs.partitioned from pgmq_jobs.queue_settings as qs order by qs.queue
    loop
        -- pgmq-jobs install sets pgmq_jobs.defer_priority_index: it builds a
        -- deep queue's priority index concurrently after this transaction.
        update pgmq_jobs.queue_settings as qs
        set priority_index = pgmq_jobs._queue_indexes(
            s.queue, s.partitioned,
            coalesce(pg_catalog.current_setting('pgmq_jobs.defer_priority_index', true), '')
            operator(pg_catalog.=) 'on'
        )
        where qs.queue operator(pg_catalog.=) s.queue;
        perform pgmq_jobs._revoke_monitor_read(s.queue);
        -- The pg_cron job of a queue with a SQL handler runs this release's
        -- command (0.1.0's called the drain procedure).
        perform pgmq_jobs._sync_handler_job(s.queue);
    end loop;
end
$queue_tables$;

-- ======================================================================
-- sql/900_grants.sql
-- ======================================================================
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

-- ======================================================================
-- sql/999_version.sql
-- ======================================================================
-- 999_version.sql: record the schema version (the last file of sql/).

insert into pgmq_jobs.schema_version (version) values ('0.2.0')
on conflict (version) do nothing;

reset search_path;
