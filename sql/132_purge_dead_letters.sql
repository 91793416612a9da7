-- 132_purge_dead_letters.sql: purge_dead_letters, drop dead letters for good.

drop function if exists pgmq_jobs.purge_dead_letters(text, interval);

create or replace function pgmq_jobs.purge_dead_letters(
    queue text, older_than interval default null, dead_ids bigint[] default null
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    purged integer;
begin
    perform pgmq_jobs._settings(queue);
    if array_position(dead_ids, null) is not null then
        raise exception 'dead_ids must not contain nulls' using errcode = '22004';
    end if;
    if older_than is not null then
        perform pgmq_jobs._check_interval('older_than', older_than, interval '0', interval '3650 days');
    end if;
    execute format(
        $sql$
        delete from pgmq.%I as d
        where ($1::interval is null or d.enqueued_at < clock_timestamp() - $1)
            and ($2::bigint[] is null or d.msg_id = any($2))
        $sql$,
        'q_' || queue || '_dlq'
    ) using older_than, dead_ids;
    get diagnostics purged = row_count;
    perform pgmq_jobs._audit(queue, 'purge_dead_letters',
        jsonb_strip_nulls(jsonb_build_object('older_than', older_than, 'dead_ids', dead_ids))
        || jsonb_build_object('purged', purged));
    return purged;
end
$$;

comment on function pgmq_jobs.purge_dead_letters(text, interval, bigint[]) is
'Delete dead letters of a queue for good: all of them, those that died more than older_than
ago, and/or only the given dead_ids. Returns how many were deleted.';
