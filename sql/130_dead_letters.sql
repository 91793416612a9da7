-- 130_dead_letters.sql: dead_letters, inspect a queue's dead-letter queue.

drop function if exists pgmq_jobs.dead_letters(text, integer);

create or replace function pgmq_jobs.dead_letters(
    queue text,
    lim integer default 100,
    dead_id bigint default null,
    error_text text default null,
    older_than interval default null,
    newer_than interval default null,
    newest_first boolean default false
)
returns setof pgmq_jobs.dead_letter
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    if lim is null or lim < 1 or lim > 100000 then
        raise exception 'lim must be between 1 and 100000, got %', coalesce(lim::text, 'null')
            using errcode = '22023';
    end if;
    if newest_first is null then
        raise exception 'newest_first must be true or false, not null'
            using errcode = '22023';
    end if;
    return query execute format(
        $sql$
        select
            d.msg_id,
            (d.message ->> 'job_id')::bigint,
            (d.message ->> 'original_job_id')::bigint,
            d.message -> 'payload',
            (d.message ->> 'attempts')::integer,
            d.message ->> 'reason',
            d.message -> 'errors',
            d.message #>> '{errors,-1,error}',
            (d.message ->> 'enqueued_at')::timestamptz,
            coalesce((d.message ->> 'died_at')::timestamptz, d.enqueued_at),
            coalesce((d.message ->> 'replays')::integer, 0)
        from pgmq.%I as d
        where ($2::bigint is null or d.msg_id = $2)
            and ($3::text is null or exists (
                select from jsonb_array_elements(d.message -> 'errors') as e
                where strpos(lower(e ->> 'error'), lower($3)) > 0
            ))
            and ($4::interval is null or d.vt < clock_timestamp() - $4)
            and ($5::interval is null or d.vt >= clock_timestamp() - $5)
        order by d.msg_id %s
        limit $1
        $sql$,
        'q_' || queue || '_dlq',
        case when newest_first then 'desc' else 'asc' end
    ) using lim, dead_id, error_text, older_than, newer_than;
end
$$;

comment on function pgmq_jobs.dead_letters(text, integer, bigint, text, interval, interval, boolean) is
'The oldest lim dead letters of a queue, oldest first (with newest_first => true the newest
lim, newest first; dead ids follow the order in which jobs died): dead_id (for replay), the
job id, payload, attempts, reason (exhausted, permanent or expired), every error with its time
and attempt, the first enqueue time and the time of death. Filters: one dead_id; error_text
(case-insensitive, in any recorded error); died more than older_than / less than newer_than
ago.';
