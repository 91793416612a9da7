-- 120_claim.sql: claim, take ready jobs with a visibility timeout.
--
-- An index walk over the queue's priority index, one priority at a time
-- (a handful of probes), each by vt: only rows with vt <= now are
-- visited, however many delayed or retry-scheduled jobs wait behind them
-- (PGMQ's read orders by msg_id instead and scans those). "now" is a parameter,
-- taken from the clock before each pass: compared with clock_timestamp()
-- itself (volatile, so never an index condition) the walk would read every
-- waiting job of a queue with none ready. Deliveries whose
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
    exhausted_ids bigint[];
    exhausted_attempts integer[];
    r record;
    job pgmq_jobs.claimed_job;
    stmt text;
    prioritized boolean := false;
    next_level text;
    level smallint;
    rounds integer := 0;
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
    -- A concurrency limit: claims of this queue take turns (advisory lock until
    -- commit) and count the open deliveries through the small index of
    -- delivered jobs, so no two claims together exceed the limit.
    if s.concurrency is not null then
        perform pg_advisory_xact_lock(hashtext('pgmq_jobs.concurrency'), hashtext(queue));
        wanted := least(wanted, s.concurrency - pgmq_jobs._in_flight(queue));
        if wanted <= 0 then
            return;
        end if;
    end if;

    -- One statement claims the ready jobs: the highest priority first, within a
    -- priority the oldest by visibility time; locked by the subquery (skipping
    -- those another claim holds), updated by msg_id. The priorities present
    -- are found one at a time, highest first, by a probe of the priority
    -- index each (the loop below), and each priority's ready jobs by a walk
    -- of that index that stops at the first job not visible yet, so delayed
    -- and retrying jobs at any priority are never read.
    -- A job past its attempts (its worker died on the last one) is not
    -- delivered again: it keeps its vt and headers, and its read_ct goes one
    -- past its attempts only to tell it apart in the result; it is put back
    -- and routed to the dead-letter queue right after. One UPDATE, not a CTE
    -- joined back to the queue: planned on every call (the table name varies),
    -- it costs half as much to plan.
    -- A queue that never had a job of another priority than 0 (most queues) is
    -- claimed by the plain walk of the vt index: the walk over the priorities
    -- costs a probe per priority more.
    prioritized := s.priority_index and s.prioritized;
    stmt := format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = case
                when q.read_ct < coalesce((q.headers ->> 'max_attempts')::integer, $3)
                    then $5 + $2
                else q.vt
            end,
            read_ct = q.read_ct + 1,
            headers = case
                when q.read_ct >= coalesce((q.headers ->> 'max_attempts')::integer, $3) then q.headers
                -- First deliveries (the common case) stay inline; a redelivery
                -- first records the delivery that timed out.
                when q.read_ct = 0 and $4::text is null then q.headers
                when q.read_ct = 0 then coalesce(q.headers, '{}') || jsonb_build_object('worker', $4::text)
                when $4::text is null then pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt) - 'worker'
                else coalesce(pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt), '{}')
                    || jsonb_build_object('worker', $4::text)
            end
        where q.msg_id = any(array(%2$s))
        returning
            q.msg_id as job_id,
            q.read_ct as attempt,
            coalesce((q.headers ->> 'max_attempts')::integer, $3) as max_attempts,
            q.message as payload,
            q.enqueued_at,
            q.vt as visible_until
        $sql$,
        'q_' || queue,
        -- One priority at a time ($6, highest first: the loop below finds the
        -- next with one probe of the priority index), or by vt alone: no job of
        -- another priority than 0, or the queue's priority index is not built
        -- yet (an upgraded queue, for the moments pgmq-jobs install builds it
        -- concurrently). Each is a walk that stops at the first job not
        -- visible yet, and simple to plan.
        case when prioritized then format(
            $sql$
            select r.msg_id
            from pgmq.%1$I as r
            -- "= any(array[...])" where "=" would do: with an equality to a
            -- constant the planner takes the order by vt as the whole order and
            -- may filter the vt index through every ready job of the priorities
            -- above; an array comparison keeps it on this index, whose walk both
            -- conditions bound (and stop at the first job not visible yet).
            where coalesce((r.headers ->> 'priority')::smallint, 0::smallint) = any(array[$6::smallint])
                and r.vt <= $5
            order by coalesce((r.headers ->> 'priority')::smallint, 0::smallint), r.vt
            limit $1
            for update skip locked
            $sql$,
            'q_' || queue
        ) else format(
            $sql$
            select r.msg_id
            from pgmq.%1$I as r
            where r.vt <= $5
            order by r.vt
            limit $1
            for update skip locked
            $sql$,
            'q_' || queue
        ) end
    );
    if prioritized then
        next_level := format(
            $sql$
            select max(coalesce((l.headers ->> 'priority')::smallint, 0::smallint))
            from pgmq.%1$I as l
            where coalesce((l.headers ->> 'priority')::smallint, 0::smallint) < $1
            $sql$,
            'q_' || queue
        );
        -- The highest priority present: the next one below 32768, above any.
        execute next_level into level using 32768;
        if level is null then
            return;
        end if;
    end if;

    -- Routed dead letters free their slot: look again for ready jobs (at the
    -- same priority), a bounded number of times, so a caller is not starved by
    -- a run of exhausted jobs. A priority without enough ready jobs hands on to
    -- the next one down.
    loop
        exhausted_ids := '{}';
        exhausted_attempts := '{}';
        for r in execute stmt using wanted, vt, s.max_attempts, worker, clock_timestamp(), level loop
            if r.attempt > r.max_attempts then
                exhausted_ids := exhausted_ids || r.job_id;
                exhausted_attempts := exhausted_attempts || (r.attempt - 1);
            else
                wanted := wanted - 1;
                job := (r.job_id, r.attempt, r.max_attempts, r.payload, r.enqueued_at, r.visible_until);
                return next job;
            end if;
        end loop;
        if cardinality(exhausted_ids) > 0 then
            execute format(
                'update pgmq.%I as q set read_ct = q.read_ct - 1 where q.msg_id = any($1)', 'q_' || queue
            ) using exhausted_ids;
            perform pgmq_jobs._route_expired(queue, exhausted_ids, exhausted_attempts);
            rounds := rounds + 1;
            exit when wanted = 0 or rounds >= 10;
            continue;
        end if;
        exit when wanted = 0 or not prioritized;
        execute next_level into level using level;
        exit when level is null;
    end loop;
end
$$;

comment on function pgmq_jobs.claim(text, integer, interval, text) is
'Claim up to qty (1..1000) ready jobs, hiding them for visibility_timeout (default: the
queue''s). attempt is the delivery''s fencing token for complete, fail and extend. A job
whose attempts are used up (its worker died on the last one) goes to the dead-letter queue
with reason expired instead of being returned. worker names the claimer in the job''s
error history. Which jobs: the ready ones of the highest priority first, and within a
priority the oldest by visibility time (the rows come back in no set order). With a concurrency limit it returns fewer jobs (or none) so that the queue never has more in flight.';
