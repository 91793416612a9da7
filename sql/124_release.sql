-- 124_release.sql: release, hand claimed but unstarted deliveries back.
--
-- A worker that prefetched jobs and is told to stop gives back the ones no
-- handler has started: they become visible at once and the claim is undone
-- (read_ct goes back), so the next worker gets the same attempt number and
-- the job's attempts are not used up by a shutdown. A released job keeps its
-- place in line: its visibility time becomes its enqueue time, so claims
-- (oldest visibility time first) take it before jobs enqueued after it.

create or replace function pgmq_jobs.release(queue text, job_ids bigint[], attempts integer[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    released integer;
begin
    perform pgmq_jobs._check_deliveries(job_ids, attempts);
    if cardinality(job_ids) = 0 then
        return 0;
    end if;
    -- The same fence as complete: only the open delivery the worker was given.
    execute format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = least(q.enqueued_at, clock_timestamp()),
            read_ct = q.read_ct - 1,
            headers = q.headers - 'worker'
        from unnest($1, $2) as t (job_id, attempt)
        where q.msg_id = t.job_id and q.read_ct = t.attempt and %2$s
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) using job_ids, attempts;
    get diagnostics released = row_count;
    if released > 0 then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return released;
end
$$;

comment on function pgmq_jobs.release(text, bigint[], integer[]) is
'Give back deliveries that were claimed but not started (a stopping worker''s prefetched
jobs): job_ids[i] whose current delivery is attempts[i] become visible now, in their place
in line (as of their enqueue time), and the claim is undone, so the attempt is not used up.
Returns how many were released; a stale pair changes nothing and is not counted.';
