-- 137_list_jobs.sql: list_jobs, a page of a queue's jobs in one state.
--
-- The rows are those of job() (sql/135_job.sql), for up to lim jobs. Each
-- state is found by a bounded index walk that stops after lim rows of that
-- state; it reads besides them only the rows of other states that share its
-- stretch of the index, never the queue's whole depth:
--   waiting    the queue's vt index up to now, oldest first; it also passes
--              the retrying jobs whose retry time has come (read_ct > 0);
--   delayed    the vt index from now on, soonest first; it also passes the
--              deliveries running now and the retries scheduled later;
--   in_flight  the index of delivered jobs (vt where read_ct > 0) from now on;
--              it also passes the retries scheduled later;
--   retrying   the index of delivered jobs from its start, by retry time; it
--              also passes the deliveries running now;
--   parked     the vt index at 'infinity' (its order among parked jobs is the
--              index's, shown by job id);
--   completed  the archive by job id, newest first;
--   dead       the dead-letter queue, newest dead letter first;
--   cancelled  pgmq_jobs.cancelled_jobs by (queue, cancelled_at), newest first;
--   null       every job still in the queue (waiting … parked) by job id.
-- Waiting, delayed, in_flight, retrying and parked are told apart as job()
-- does, by pgmq_jobs._job_state. A windowed dedupe key (not on the job's row)
-- is looked up in pgmq_jobs.dedupe_keys among the queue's live keys.

-- The walk itself. PL/pgSQL refuses an argument and an output column of one
-- name, as in _job: the public list_jobs is a SQL function over this one.
create or replace function pgmq_jobs._list_jobs(q_name text, want text, lim integer)
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
    walk text;
    page text;
    ordering text;
begin
    if want is not null and not want = any(array[
        'waiting', 'delayed', 'in_flight', 'retrying', 'parked', 'completed', 'dead', 'cancelled'
    ]) then
        raise exception 'state must be waiting, delayed, in_flight, retrying, parked, completed, dead, cancelled or null, got %', want
            using errcode = '22023';
    end if;
    if lim is null then
        raise exception 'lim must not be null' using errcode = '22004';
    end if;
    if lim < 1 or lim > 1000 then
        raise exception 'lim must be between 1 and 1000, got %', lim using errcode = '22023';
    end if;

    -- $1 now, $2 lim, $3 state, $4 queue, $5 the queue's max_attempts.
    if want is null or want in ('waiting', 'delayed', 'in_flight', 'retrying', 'parked') then
        -- The cut-off is the parameter $1, never clock_timestamp() in the
        -- statement: only a stable value bounds an index walk.
        walk := case want
            when 'waiting' then 'q.vt <= $1 and q.read_ct <= 0 order by q.vt'
            when 'delayed' then
                $w$q.vt > $1 and q.vt < 'infinity' and q.read_ct <= 0 order by q.vt$w$
            when 'in_flight' then
                $w$q.read_ct > 0 and q.vt > $1 and q.vt < 'infinity'
                and pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $1) = 'in_flight'
                order by q.vt$w$
            when 'retrying' then
                $w$q.read_ct > 0 and q.vt < 'infinity'
                and pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $1) = 'retrying'
                order by q.vt$w$
            when 'parked' then $w$q.vt = 'infinity' order by q.vt$w$
            else 'true order by q.msg_id'
        end;
        ordering := case when want in ('parked') or want is null then 'p.job_id' else 'p.visible_at, p.job_id' end;
        -- Columns as in job(): a delivery whose visibility timeout ran out
        -- shows that in its errors; a parked job's time is headers.run_at.
        page := pg_catalog.format(
            $sql$
            select
                q.msg_id as job_id,
                pgmq_jobs._job_state(q.vt, q.read_ct, q.headers, $1) as state,
                q.read_ct as attempt,
                coalesce((q.headers ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((q.headers ->> 'priority')::smallint, 0::smallint) as priority,
                q.message as payload,
                coalesce((q.headers ->> 'first_enqueued_at')::timestamptz, q.enqueued_at) as enqueued_at,
                case when q.vt = 'infinity' then (q.headers ->> 'run_at')::timestamptz else q.vt end
                    as visible_at,
                coalesce(
                    case when q.vt <= $1 then pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt) else q.headers end
                    -> 'errors',
                    '[]'
                ) as errors,
                q.headers ->> 'group_key' as group_key,
                q.headers ->> 'dedupe_key' as dedupe_key,
                null::timestamptz as at
            from pgmq.%I as q
            where %s
            limit $2
            $sql$,
            'q_' || q_name, walk
        );
    elsif want = 'completed' then
        ordering := 'p.job_id desc';
        page := pg_catalog.format(
            $sql$
            select
                a.msg_id as job_id, 'completed'::text as state, a.read_ct as attempt,
                coalesce((a.headers ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((a.headers ->> 'priority')::smallint, 0::smallint) as priority,
                a.message as payload,
                coalesce((a.headers ->> 'first_enqueued_at')::timestamptz, a.enqueued_at) as enqueued_at,
                null::timestamptz as visible_at,
                coalesce(a.headers -> 'errors', '[]') as errors,
                a.headers ->> 'group_key' as group_key,
                a.headers ->> 'dedupe_key' as dedupe_key,
                null::timestamptz as at
            from pgmq.%I as a
            order by a.msg_id desc
            limit $2
            $sql$,
            'a_' || q_name
        );
    elsif want = 'dead' then
        ordering := 'p.at desc, p.job_id desc';
        page := pg_catalog.format(
            $sql$
            select
                (d.message ->> 'job_id')::bigint as job_id, 'dead'::text as state,
                (d.message ->> 'attempts')::integer as attempt,
                coalesce((d.message ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((d.message ->> 'priority')::smallint, 0::smallint) as priority,
                d.message -> 'payload' as payload,
                (d.message ->> 'enqueued_at')::timestamptz as enqueued_at,
                null::timestamptz as visible_at,
                coalesce(d.message -> 'errors', '[]') as errors,
                d.message ->> 'group_key' as group_key,
                d.message ->> 'dedupe_key' as dedupe_key,
                d.enqueued_at as at
            from pgmq.%I as d
            order by d.msg_id desc
            limit $2
            $sql$,
            'q_' || q_name || '_dlq'
        );
    else
        ordering := 'p.at desc, p.job_id desc';
        page := $sql$
            select
                c.job_id, 'cancelled'::text as state, c.attempt,
                coalesce((c.headers ->> 'max_attempts')::integer, $5) as max_attempts,
                coalesce((c.headers ->> 'priority')::smallint, 0::smallint) as priority,
                c.payload,
                coalesce((c.headers ->> 'first_enqueued_at')::timestamptz, c.enqueued_at) as enqueued_at,
                null::timestamptz as visible_at,
                coalesce(c.headers -> 'errors', '[]') as errors,
                c.headers ->> 'group_key' as group_key,
                c.headers ->> 'dedupe_key' as dedupe_key,
                c.cancelled_at as at
            from pgmq_jobs.cancelled_jobs as c
            where c.queue = $4
            order by c.cancelled_at desc
            limit $2
        $sql$;
    end if;

    return query execute pg_catalog.format(
        $sql$
        with p as materialized (%s)
        select
            p.job_id, p.state, p.attempt, p.max_attempts, p.priority, p.payload,
            p.enqueued_at, p.visible_at, p.errors, p.group_key,
            coalesce(
                p.dedupe_key,
                (select k.dedupe_key from pgmq_jobs.dedupe_keys as k where k.queue = $4 and k.job_id = p.job_id)
            )
        from p
        order by %s
        $sql$,
        page, ordering
    ) using now_at, lim, want, q_name, s.max_attempts;
end
$$;

create or replace function pgmq_jobs.list_jobs(queue text, state text default null, lim integer default 100)
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
    select * from pgmq_jobs._list_jobs($1, $2, $3)
$$;

comment on function pgmq_jobs.list_jobs(text, text, integer) is
'Up to lim (1..1000, default 100) jobs of a queue in one state, with the columns of job().
state: waiting (oldest first), delayed, in_flight or retrying (by visible_at), parked (by
job id), completed, dead or cancelled (newest first), or null for every job still in the
queue (by job id). Cost: a bounded index walk that stops after lim rows of the state; it
also reads the rows of other states sharing its stretch of the index (waiting passes the
retries that are due, delayed the running deliveries and later retries, in_flight the
later retries, retrying the running deliveries), never the rest of the queue''s depth; a
windowed dedupe key is looked up among the queue''s live keys. Admin only.';
