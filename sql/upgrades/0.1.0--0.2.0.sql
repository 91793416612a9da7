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
