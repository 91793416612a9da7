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

