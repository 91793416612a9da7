-- 120_claim.sql: claim, take ready jobs with a visibility timeout.
--
-- An index walk over the queue's vt index: only rows with vt <= now are
-- visited, however many delayed or retry-scheduled jobs wait behind them
-- (PGMQ's read orders by msg_id instead and scans those). Deliveries whose
-- attempts are used up (their worker died on the last one) are routed to the
-- dead-letter queue in the same statement instead of being returned.

create or replace function pgmq_jobs.claim(
    queue text,
    qty integer default 1,
    visibility_timeout interval default null,
    worker text default null
)
returns setof pgmq_jobs.claimed_job
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    vt interval := coalesce(visibility_timeout, s.visibility_timeout);
    wanted integer := qty;
    routed integer;
    r record;
    stmt text;
begin
    if qty is null or qty < 1 or qty > 1000 then
        raise exception 'qty must be between 1 and 1000, got %', coalesce(qty::text, 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_interval('visibility_timeout', vt, interval '0', interval '1 day', true);
    if length(worker) > 200 then
        raise exception 'worker must be at most 200 characters, got %', length(worker)
            using errcode = '22023';
    end if;

    stmt := format(
        $sql$
        with ready as (
            select
                q.msg_id,
                q.read_ct,
                coalesce((q.headers ->> 'max_attempts')::integer, $3) as max_attempts
            from pgmq.%1$I as q
            where q.vt <= clock_timestamp()
            order by q.vt
            limit $1
            for update skip locked
        ),
        -- The delivery that just timed out (worker lost) joins the error history.
        timed_out as (
            select
                r.msg_id,
                r.read_ct >= r.max_attempts as exhausted,
                case
                    when r.read_ct > 0 and pgmq_jobs._open_delivery(q.headers, r.read_ct)
                        then jsonb_set(
                            coalesce(q.headers, '{}'), '{errors}',
                            coalesce(q.headers -> 'errors', '[]')
                            || pgmq_jobs._error_entry(
                                r.read_ct, 'visibility timeout expired without an outcome',
                                q.headers -> 'worker', q.vt
                            )
                        )
                    else q.headers
                end as headers
            from ready as r
            join pgmq.%1$I as q on q.msg_id = r.msg_id
        ),
        dead as (
            delete from pgmq.%1$I as q
            using timed_out as t
            where q.msg_id = t.msg_id and t.exhausted
            returning q.msg_id, q.read_ct, q.enqueued_at, q.message, t.headers
        ),
        routed as (
            insert into pgmq.%2$I (vt, message)
            select
                clock_timestamp(),
                pgmq_jobs._dead_letter(
                    %3$L, d.msg_id, d.message, d.read_ct, d.headers, d.enqueued_at, 'expired', null
                )
            from dead as d
            returning msg_id
        ),
        claimed as (
            update pgmq.%1$I as q
            set
                vt = clock_timestamp() + $2,
                read_ct = q.read_ct + 1,
                headers = case
                    when $4::text is null and t.headers is null then null
                    when $4::text is null then t.headers - 'worker'
                    else coalesce(t.headers, '{}') || jsonb_build_object('worker', $4::text)
                end
            from timed_out as t
            where q.msg_id = t.msg_id and not t.exhausted
            returning q.msg_id, q.read_ct, q.message, q.enqueued_at, q.vt, q.headers
        )
        select
            c.msg_id as job_id,
            c.read_ct as attempt,
            coalesce((c.headers ->> 'max_attempts')::integer, $3) as max_attempts,
            c.message as payload,
            c.enqueued_at,
            c.vt as visible_until
        from claimed as c
        union all
        select null, null, null, null, null, null from routed
        $sql$,
        'q_' || queue, 'q_' || queue || '_dlq', queue
    );

    -- Routed dead letters free their slot: look again for ready jobs, a bounded
    -- number of times, so a caller is not starved by a run of exhausted jobs.
    for pass in 1..10 loop
        routed := 0;
        for r in execute stmt using wanted, vt, s.max_attempts, worker loop
            if r.job_id is null then
                routed := routed + 1;
            else
                wanted := wanted - 1;
                return next r;
            end if;
        end loop;
        exit when routed = 0 or wanted = 0;
    end loop;
end
$$;

comment on function pgmq_jobs.claim(text, integer, interval, text) is
'Claim up to qty (1..1000) ready jobs, hiding them for visibility_timeout (default: the
queue''s). attempt is the delivery''s fencing token for complete, fail and extend. A job
whose attempts are used up (its worker died on the last one) goes to the dead-letter queue
with reason expired instead of being returned. worker names the claimer in the job''s
error history. Order: by visibility time, so the oldest ready job first.';
