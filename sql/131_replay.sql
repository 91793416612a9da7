-- 131_replay.sql: replay, move dead letters back into their queue.

create or replace function pgmq_jobs.replay(queue text, dead_ids bigint[] default null)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    moved integer;
begin
    if array_position(dead_ids, null) is not null then
        raise exception 'dead_ids must not contain nulls' using errcode = '22004';
    end if;
    -- One statement: a dead letter leaves the DLQ exactly when its job is back.
    execute format(
        $sql$
        with revived as (
            delete from pgmq.%1$I as d
            where $1::bigint[] is null or d.msg_id = any($1)
            returning d.msg_id, d.message
        )
        insert into pgmq.%2$I (vt, message, headers)
        select
            clock_timestamp(),
            r.message -> 'payload',
            jsonb_strip_nulls(jsonb_build_object(
                'original_job_id', r.message -> 'original_job_id',
                'first_enqueued_at', r.message -> 'enqueued_at',
                'replays', coalesce((r.message ->> 'replays')::integer, 0) + 1,
                'max_attempts', r.message -> 'max_attempts'
            ))
        from revived as r
        order by r.msg_id
        $sql$,
        'q_' || queue || '_dlq', 'q_' || queue
    ) using dead_ids;
    get diagnostics moved = row_count;
    if moved > 0 then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    return moved;
end
$$;

comment on function pgmq_jobs.replay(text, bigint[]) is
'Put dead letters (dead_ids from dead_letters; null = all) back into their queue as new jobs
with a fresh attempt count. Returns how many were replayed; ids not in the dead-letter queue
are ignored. The new job remembers its original job id and first enqueue time.';
