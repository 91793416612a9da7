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
