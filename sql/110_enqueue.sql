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
