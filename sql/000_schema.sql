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
