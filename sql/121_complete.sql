-- 121_complete.sql: complete, acknowledge finished deliveries in one statement.

drop function if exists pgmq_jobs.complete(text, bigint[], integer[]);

create or replace function pgmq_jobs.complete(
    queue text,
    job_ids bigint[],
    attempts integer[],
    durations_ms double precision[] default null
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    done integer;
    groups text[];
    timed integer := 0;
    total_ms double precision := 0;
    buckets integer[];
begin
    perform pgmq_jobs._check_deliveries(job_ids, attempts);
    if durations_ms is not null and cardinality(durations_ms) <> cardinality(job_ids) then
        raise exception 'durations_ms must have one element per job, got % for % jobs',
            cardinality(durations_ms), cardinality(job_ids)
            using errcode = '22023';
    end if;
    if cardinality(job_ids) = 0 then
        return 0;
    end if;

    -- The fence: a row is finished only while its read_ct is the attempt the
    -- worker was given and that delivery has not failed. A stale pair matches
    -- nothing and is not counted. Completions are archived, or deleted when
    -- the queue keeps none.
    execute format(
        $sql$
        with finished as (
            delete from pgmq.%1$I as q
            using unnest($1, $2) as t (job_id, attempt)
            where q.msg_id = t.job_id and q.read_ct = t.attempt and %3$s
            returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        ),
        archived as (
            insert into pgmq.%2$I (msg_id, read_ct, enqueued_at, vt, message, headers)
            select f.msg_id, f.read_ct, f.enqueued_at, f.vt, f.message, f.headers
            from finished as f
            where $3
        )
        select count(*), array_agg(f.headers ->> 'group_key') filter (where f.headers ? 'group_key')
        from finished as f
        $sql$,
        'q_' || queue, 'a_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into done, groups using job_ids, attempts, s.keep_completed > interval '0';

    if done > 0 then
        -- Processing times, when the worker reports them, as a sum and a
        -- histogram of power-of-two millisecond buckets (for averages and p95).
        if durations_ms is not null then
            select h.n, h.total, h.buckets into timed, total_ms, buckets
            from pgmq_jobs._duration_histogram(durations_ms) as h;
        end if;
        insert into pgmq_jobs.outcome_log (queue, completed, duration_count, duration_ms_sum, duration_buckets)
        values (queue, done, timed, total_ms, buckets);
    end if;
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;
    return done;
end
$$;

comment on function pgmq_jobs.complete(text, bigint[], integer[], double precision[]) is
'Complete jobs: job_ids[i] whose current delivery is attempts[i] are archived (or deleted when
the queue keeps no completions). Returns how many were completed; a stale pair (the job was
redelivered, failed, finished or dead-lettered since) changes nothing and is not counted.
durations_ms (optional, one per job) are the handlers'' processing times, recorded for
queue_stats.';
