-- 132_purge_dead_letters.sql: purge_dead_letters, drop dead letters for good.

create or replace function pgmq_jobs.purge_dead_letters(queue text, older_than interval default null)
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
    if older_than is not null then
        perform pgmq_jobs._check_interval('older_than', older_than, interval '0', interval '3650 days');
    end if;
    execute format(
        $sql$
        delete from pgmq.%I as d
        where $1::interval is null or d.enqueued_at < clock_timestamp() - $1
        $sql$,
        'q_' || queue || '_dlq'
    ) using older_than;
    get diagnostics purged = row_count;
    perform pgmq_jobs._audit(queue, 'purge_dead_letters',
        jsonb_build_object('older_than', older_than, 'purged', purged));
    return purged;
end
$$;

comment on function pgmq_jobs.purge_dead_letters(text, interval) is
'Delete dead letters of a queue for good: all of them, or those that died more than
older_than ago. Returns how many were deleted.';
