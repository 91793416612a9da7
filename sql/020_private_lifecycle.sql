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
