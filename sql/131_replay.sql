-- 131_replay.sql: replay, move dead letters back into their queue.

create or replace function pgmq_jobs.replay(
    queue text, dead_ids bigint[] default null, strict boolean default false
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    moved integer;
    groups text[];
    grouped_ids bigint[];
    revived_ids bigint[];
    missing bigint[];
    with_priority boolean;
    k text;
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
        ),
        requeued as (
            insert into pgmq.%2$I (vt, message, headers)
            select
                clock_timestamp(),
                r.message -> 'payload',
                jsonb_strip_nulls(jsonb_build_object(
                    'original_job_id', r.message -> 'original_job_id',
                    'first_enqueued_at', r.message -> 'enqueued_at',
                    'replays', coalesce((r.message ->> 'replays')::integer, 0) + 1,
                    'max_attempts', r.message -> 'max_attempts',
                    'group_key', r.message -> 'group_key',
                    'priority', r.message -> 'priority'
                ))
            from revived as r
            order by r.msg_id
            returning msg_id, headers ->> 'group_key' as group_key
        )
        select count(*), array_agg(distinct q.group_key) filter (where q.group_key is not null),
            array_agg(q.msg_id) filter (where q.group_key is not null),
            (select array_agg(r.msg_id) from revived as r),
            (select coalesce(bool_or(r.message ? 'priority'), false) from revived as r)
        from requeued as q
        $sql$,
        'q_' || queue || '_dlq', 'q_' || queue
    ) into moved, groups, grouped_ids, revived_ids, with_priority using dead_ids;
    if with_priority and not s.prioritized then
        perform pgmq_jobs._mark_prioritized(queue);
    end if;
    -- strict: ids that were not dead letters (in the same statement's view, so no
    -- race) are an error that undoes the whole call, replayed jobs and audit row
    -- included. Otherwise they are ignored, as in 0.1.0.
    select array_agg(distinct m.id order by m.id) into missing
    from unnest(dead_ids) as m (id)
    where strict and m.id <> all(coalesce(revived_ids, '{}'));
    if missing is not null then
        raise exception 'not dead letters of queue %: %; nothing was replayed',
            queue,
            array_to_string(missing[1:10], ', ')
            || case when cardinality(missing) > 10
                then format(' and %s more', cardinality(missing) - 10) else '' end
            using errcode = '22023',
            hint = 'dead_letters(queue) lists the dead ids (a replayed letter leaves the dead-letter queue)';
    end if;
    -- A replayed job of an ordered group queues up behind the group's earlier jobs.
    foreach k in array coalesce(groups, '{}') loop
        perform pgmq_jobs._group_lock(queue, k);
        execute format(
            $sql$
            update pgmq.%1$I as q
            set headers = q.headers || jsonb_build_object('run_at', q.vt), vt = 'infinity'
            where q.msg_id = any($2) and (q.headers ->> 'group_key') = $1 and q.msg_id > (
                select min(h.msg_id) from pgmq.%1$I as h
                where (h.headers ->> 'group_key') = $1 and h.headers ? 'group_key'
            )
            $sql$,
            'q_' || queue
        ) using k, grouped_ids;
    end loop;
    if moved > 0 then
        perform pgmq_jobs._wake(queue, s.notify);
    end if;
    perform pgmq_jobs._audit(queue, 'replay', jsonb_build_object('dead_ids', dead_ids, 'replayed', moved));
    return moved;
end
$$;

comment on function pgmq_jobs.replay(text, bigint[], boolean) is
'Put dead letters (dead_ids from dead_letters; null = all) back into their queue as new jobs
with a fresh attempt count. Returns how many were replayed; ids not in the dead-letter queue
are ignored, or with strict => true refused: the call then changes nothing (no job, no audit
row) and its error names them (the CLI replays strictly). The new
job remembers its original job id and first enqueue time, and keeps its priority and group (not
its dedupe key).';
