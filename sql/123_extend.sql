-- 123_extend.sql: extend, the heartbeat of a long job.

create or replace function pgmq_jobs.extend(queue text, job_id bigint, attempt integer, by interval)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    visible_until timestamptz;
begin
    perform pgmq_jobs._settings(queue);
    perform pgmq_jobs._check_delivery(job_id, attempt);
    perform pgmq_jobs._check_interval('by', extend.by, interval '0', interval '1 day', true);
    execute format(
        $sql$
        update pgmq.%I as q
        set vt = clock_timestamp() + $3
        where q.msg_id = $1 and q.read_ct = $2
            and %2$s
        returning q.vt
        $sql$,
        'q_' || queue, pgmq_jobs._sql_open_delivery('q')
    ) into visible_until using job_id, attempt, extend.by;
    if visible_until is null then
        perform pgmq_jobs._check_job_issued(queue, job_id);
    end if;
    return visible_until;
end
$$;

comment on function pgmq_jobs.extend(text, bigint, integer, interval) is
'Keep a delivery hidden for another "by" from now (heartbeat for long jobs). Returns the new
visible-until time, or null when the delivery is stale (the job was redelivered, finished or
dead-lettered). A job_id the queue never issued is an error.';
