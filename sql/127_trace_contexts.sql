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
