-- 134_cancel.sql: cancel, take jobs out of their queue for good.
--
-- One statement deletes the jobs from the queue table and records them in
-- pgmq_jobs.cancelled_jobs (not in the dead-letter queue): a job that is
-- waiting, delayed, retrying or parked, and one in flight too. An in-flight
-- job's worker then finds its delivery gone: complete counts 0, fail says
-- stale and extend returns null (the fence of every outcome call is the row
-- itself), which the worker turns into ctx.cancelled for a cooperative
-- handler. A concurrent claim that holds a row makes the delete wait and then
-- cancel the delivery it made. Dedupe keys: an unwindowed key lives on the
-- queue row, so it is free at once; a windowed key (pgmq_jobs.dedupe_keys)
-- stays until its window ends, as it does for a completed job.

create or replace function pgmq_jobs.cancel(queue text, job_ids bigint[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cancelled integer;
    groups text[];
begin
    perform pgmq_jobs._settings(queue);
    perform pgmq_jobs._check_job_ids(job_ids);
    execute pg_catalog.format(
        $sql$
        with gone as (
            delete from pgmq.%1$I as q
            where q.msg_id = any($1)
            returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
        ),
        recorded as (
            insert into pgmq_jobs.cancelled_jobs as c (
                queue, job_id, payload, headers, attempt, enqueued_at, state, cancelled_at, cancelled_by
            )
            select
                $2, g.msg_id, g.message,
                -- A delivery that had timed out keeps that in its history, as its
                -- next claim would have recorded it.
                case when g.vt <= $3 then pgmq_jobs._timed_out(g.headers, g.read_ct, g.vt) else g.headers end,
                g.read_ct, g.enqueued_at, pgmq_jobs._job_state(g.vt, g.read_ct, g.headers, $3),
                clock_timestamp(), $4
            from gone as g
            on conflict on constraint cancelled_jobs_pkey do update set
                payload = excluded.payload,
                headers = excluded.headers,
                attempt = excluded.attempt,
                enqueued_at = excluded.enqueued_at,
                state = excluded.state,
                cancelled_at = excluded.cancelled_at,
                cancelled_by = excluded.cancelled_by
        )
        select count(*), array_agg(g.headers ->> 'group_key') filter (where g.headers ? 'group_key')
        from gone as g
        $sql$,
        'q_' || queue
    ) into cancelled, groups using job_ids, queue, clock_timestamp(), pgmq_jobs._actor();
    -- A cancelled group head lets the group's next job go.
    if groups is not null then
        perform pgmq_jobs._release_groups(queue, groups);
    end if;
    perform pgmq_jobs._audit(queue, 'cancel', jsonb_build_object('job_ids', job_ids, 'cancelled', cancelled));
    return cancelled;
end
$$;

comment on function pgmq_jobs.cancel(text, bigint[]) is
'Cancel jobs: those of job_ids that are waiting, delayed, retrying, parked or in flight leave
the queue and are recorded as cancelled (not dead-lettered; job() reports them, until the
sweep drops them after keep_completed). An in-flight job''s worker finds its delivery gone:
complete counts 0, fail returns stale and extend null. A cancelled group head releases the
next job of its group. An unwindowed dedupe key is free at once; a windowed one is kept until
its window ends (an enqueue with it returns the cancelled job''s id until then). Returns how
many were cancelled; unknown or finished ids are not counted. Audited (action cancel).';
