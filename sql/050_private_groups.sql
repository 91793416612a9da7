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
