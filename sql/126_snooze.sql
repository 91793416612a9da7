-- 126_snooze.sql: snooze, a handler's "not yet".
--
-- The worker ends its delivery and the job comes back after "by" without
-- using up an attempt: as release does, the claim is undone (read_ct goes
-- back by one, so the next delivery gets the same attempt number), but the
-- job becomes visible only at now + by, behind the jobs ready by then. Fenced
-- like extend: only the open delivery the worker was given, so a stale snooze
-- changes nothing and returns null; a second snooze of the same delivery is
-- stale too.

create or replace function pgmq_jobs.snooze(queue text, job_id bigint, attempt integer, by interval)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    visible_at timestamptz;
begin
    perform pgmq_jobs._check_delivery(job_id, attempt);
    perform pgmq_jobs._check_interval('by', snooze.by, interval '0', interval '3650 days');
    execute pg_catalog.format(
        $sql$
        update pgmq.%I as q
        set
            vt = clock_timestamp() + $3,
            read_ct = q.read_ct - 1,
            headers = q.headers - 'worker'
        where q.msg_id = $1 and q.read_ct = $2
            and %2$s
        returning q.vt
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into visible_at using job_id, attempt, snooze.by;
    if visible_at is null then
        perform pgmq_jobs._check_job_issued(queue, job_id);
    elsif snooze.by = interval '0' then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return visible_at;
end
$$;

comment on function pgmq_jobs.snooze(text, bigint, integer, interval) is
'End a delivery and bring the job back after "by" (0 to 3650 days) without using up an attempt:
the next delivery gets the same attempt number. Only the delivery the worker was given:
returns the time the job becomes visible again, or null when the delivery is stale (the job
was redelivered, snoozed, finished, cancelled or dead-lettered), which changes nothing. A job
of an ordered group stays its group''s head meanwhile. A job_id the queue never issued is an
error.';
