-- 136_reschedule.sql: reschedule, move jobs that are not running in time.
--
-- Waiting, delayed and retrying jobs become visible at run_at (a time in the
-- past means now: they do not jump ahead of jobs already ready). An in-flight
-- job is left alone (its worker holds it; snooze is the worker's way). A
-- parked job (a group member behind its head) keeps waiting for its group:
-- its own time, headers.run_at, becomes run_at, so it runs at run_at or when
-- its group lets it go, whichever is later. A retrying job whose delivery had
-- timed out gets that timeout recorded now, as its next claim would have,
-- which also closes that delivery: its stalled worker can no longer finish it.

create or replace function pgmq_jobs.reschedule(queue text, job_ids bigint[], run_at timestamptz)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    now_at timestamptz := clock_timestamp();
    visible_at timestamptz;
    moved integer;
begin
    perform pgmq_jobs._check_job_ids(job_ids);
    if run_at is null then
        raise exception 'run_at must not be null' using errcode = '22004';
    end if;
    if not isfinite(run_at) then
        raise exception 'run_at must be a finite time, got %', run_at using errcode = '22023';
    end if;
    visible_at := greatest(run_at, now_at);
    -- In flight: read_ct > 0, an open delivery and its visibility timeout
    -- running. Re-checked on the newest row version when a claim holds a row.
    execute pg_catalog.format(
        $sql$
        update pgmq.%1$I as q
        set
            vt = case when q.vt = 'infinity' then q.vt else $2 end,
            headers = case
                when q.vt = 'infinity' then coalesce(q.headers, '{}') || jsonb_build_object('run_at', $2)
                else pgmq_jobs._timed_out(q.headers, q.read_ct, q.vt)
            end
        where q.msg_id = any($1)
            and not (q.read_ct > 0 and q.vt > $3 and q.vt <> 'infinity' and %2$s)
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) using job_ids, visible_at, now_at;
    get diagnostics moved = row_count;
    if moved > 0 and visible_at <= clock_timestamp() then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    perform pgmq_jobs._audit(queue, 'reschedule', jsonb_build_object(
        'job_ids', job_ids, 'run_at', run_at, 'rescheduled', moved
    ));
    return moved;
end
$$;

comment on function pgmq_jobs.reschedule(text, bigint[], timestamptz) is
'Move waiting, delayed and retrying jobs of job_ids to become visible at run_at (not null,
finite; a time in the past means now). A parked job (an ordered group''s job behind its head)
takes run_at as its own time and still waits for its group. In-flight, unknown and finished
jobs are left alone and not counted. Returns how many were rescheduled. The attempt count is
unchanged. Audited (action reschedule).';
