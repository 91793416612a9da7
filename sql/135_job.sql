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
