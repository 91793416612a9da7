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
