-- 060_private_job_control.sql: the record of cancelled jobs and the states of
-- a job in its queue, shared by cancel, job, reschedule and snooze.

-- Jobs removed from their queue by cancel: what job() reports as state
-- 'cancelled', with the job's payload, headers (error history, keys) and
-- attempts at that moment. The sweep deletes rows older than the queue's
-- keep_completed (a walk of the (queue, cancelled_at) index); dropping the
-- queue deletes its rows (the foreign key), so a queue created again under
-- the same name, whose job ids start over, never reports another one's.
create table if not exists pgmq_jobs.cancelled_jobs (
    queue text not null references pgmq_jobs.queue_settings (queue) on delete cascade,
    job_id bigint not null,
    payload jsonb,
    headers jsonb,
    attempt integer not null,
    enqueued_at timestamptz not null,
    -- The job's state when it was cancelled: waiting, delayed, in_flight,
    -- retrying or parked.
    state text not null,
    cancelled_at timestamptz not null default pg_catalog.clock_timestamp(),
    cancelled_by text not null,
    primary key (queue, job_id)
);
create index if not exists cancelled_jobs_cancelled_at_idx
on pgmq_jobs.cancelled_jobs (queue, cancelled_at);
comment on table pgmq_jobs.cancelled_jobs is
'Jobs cancelled with pgmq_jobs.cancel, kept as long as completions (keep_completed); read them with pgmq_jobs.job';

-- The state of a job still in its queue table, from its row and the time now:
--   parked    vt = 'infinity': a group member waiting behind its group's head
--             (its own time is headers.run_at);
--   waiting   never delivered (read_ct 0; a release or snooze of its only
--             delivery undoes that delivery), visible now;
--   delayed   never delivered, visible later (delay, run_at, reschedule,
--             snooze of its first delivery);
--   in_flight an open delivery (read_ct > 0, no failure recorded for attempt
--             read_ct) whose visibility timeout is still running;
--   retrying  delivered before and no delivery running: the last one failed,
--             timed out without an outcome, or was snoozed after a failed one;
--             it waits for its next delivery, whether its retry time has come
--             (visible, not claimed yet) or not.
create or replace function pgmq_jobs._job_state(
    vt timestamptz, read_ct integer, headers jsonb, now timestamptz
)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    return case
        when vt = 'infinity' then 'parked'
        when read_ct <= 0 and vt > now then 'delayed'
        when read_ct <= 0 then 'waiting'
        when vt > now and pgmq_jobs._open_delivery(headers, read_ct) then 'in_flight'
        else 'retrying'
    end;
end
$$;

-- The checks of a list of job ids given to cancel and reschedule.
create or replace function pgmq_jobs._check_job_ids(job_ids bigint[])
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if job_ids is null then
        raise exception 'job_ids must not be null' using errcode = '22004';
    end if;
    if array_position(job_ids, null) is not null then
        raise exception 'job_ids must not contain nulls' using errcode = '22004';
    end if;
    if cardinality(job_ids) > 100000 then
        raise exception 'job_ids may hold at most 100000 ids, got %', cardinality(job_ids)
            using errcode = '22023';
    end if;
end
$$;
