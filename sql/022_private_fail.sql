-- 022_private_fail.sql: the failure reports of fail and fail_batch, set-based.
--
-- One UPDATE schedules the retries of every open delivery given (fenced on
-- read_ct and on the delivery not having failed already); only when some
-- deliveries remain does one DELETE move the permanent and exhausted ones to
-- the dead-letter queue. What neither statement touched is stale.

create or replace function pgmq_jobs._fail_deliveries(
    queue text,
    s pgmq_jobs.queue_settings,
    job_ids bigint[],
    attempts integer[],
    errors text[],
    retry_afters interval[],
    permanents boolean[]
)
returns table (job_id bigint, outcome text, attempt integer, next_attempt_at timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    retried_ids bigint[];
    retried_at timestamptz[];
    dead_ids bigint[] := '{}';
    groups text[];
    stale_max bigint;
begin
    execute format(
        $sql$
        with retried as (
            update pgmq.%1$I as q
            set
                vt = clock_timestamp()
                    + coalesce(t.retry_after, pgmq_jobs._retry_delay(t.attempt, $6, $7, $8, $9)),
                headers = jsonb_set(
                    coalesce(q.headers, '{}'), '{errors}',
                    coalesce(q.headers -> 'errors', '[]')
                    || pgmq_jobs._error_entry(t.attempt, t.error, q.headers -> 'worker', clock_timestamp())
                )
            from unnest($1, $2, $3, $4, $5) as t (job_id, attempt, error, retry_after, permanent)
            where q.msg_id = t.job_id and q.read_ct = t.attempt and %2$s
                and not t.permanent
                and t.attempt < coalesce((q.headers ->> 'max_attempts')::integer, $10)
            returning q.msg_id, q.vt
        )
        select coalesce(array_agg(r.msg_id), '{}'), coalesce(array_agg(r.vt), '{}') from retried as r
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into retried_ids, retried_at
    using job_ids, attempts, errors, retry_afters, permanents,
        s.retry_base, s.retry_max, s.retry_factor, s.jitter, s.max_attempts;

    if cardinality(retried_ids) < cardinality(job_ids) then
        execute format(
            $sql$
            with dead as (
                delete from pgmq.%1$I as q
                using unnest($1, $2, $3, $4) as t (job_id, attempt, error, permanent)
                where q.msg_id = t.job_id and q.read_ct = t.attempt and %4$s
                    and (t.permanent or t.attempt >= coalesce((q.headers ->> 'max_attempts')::integer, $5))
                returning q.msg_id, q.read_ct, q.enqueued_at, q.message, q.headers, t.error, t.permanent
            ),
            routed as (
                insert into pgmq.%2$I (vt, message)
                select clock_timestamp(), pgmq_jobs._dead_letter(
                    %3$L, d.msg_id, d.message, d.read_ct, d.headers, d.enqueued_at,
                    case when d.permanent then 'permanent' else 'exhausted' end,
                    pgmq_jobs._error_entry(d.read_ct, d.error, d.headers -> 'worker', clock_timestamp())
                )
                from dead as d
            )
            select
                coalesce(array_agg(d.msg_id), '{}'),
                array_agg(d.headers ->> 'group_key') filter (where d.headers ? 'group_key')
            from dead as d
            $sql$,
            'q_' || queue, 'q_' || queue || '_dlq', queue, pgmq_jobs._sql_open_delivery('q')
        ) into dead_ids, groups
        using job_ids, attempts, errors, permanents, s.max_attempts;

        -- Neither retried nor dead: stale, unless the queue never issued the id.
        select max(t.id) into stale_max
        from unnest(job_ids) as t (id)
        where t.id <> all(retried_ids) and t.id <> all(dead_ids);
        if stale_max is not null then
            perform pgmq_jobs._check_job_issued(queue, stale_max);
        end if;
    end if;

    if cardinality(retried_ids) + cardinality(dead_ids) > 0 then
        insert into pgmq_jobs.outcome_log (queue, retried, dead)
        values (queue, cardinality(retried_ids), cardinality(dead_ids));
    end if;
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;

    return query
    select
        t.id,
        case when r.id is not null then 'retry' when t.id = any(dead_ids) then 'dead' else 'stale' end,
        t.att,
        r.at
    from unnest(job_ids, attempts) with ordinality as t (id, att, ord)
    left join unnest(retried_ids, retried_at) as r (id, at) on r.id = t.id
    order by t.ord;
end
$$;
