-- 100_create_queue.sql: create_queue, the PGMQ queue plus its dead-letter
-- queue <queue>_dlq and its settings row.

create or replace function pgmq_jobs.create_queue(
    queue text,
    max_attempts integer default 5,
    visibility_timeout interval default interval '30 seconds',
    retry_base interval default interval '1 second',
    retry_max interval default interval '5 minutes',
    retry_factor double precision default 2,
    jitter text default 'full',
    keep_completed interval default interval '7 days',
    max_payload_bytes integer default 1048576,
    unlogged boolean default false,
    notify boolean default true
)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings;
begin
    perform pgmq_jobs._check_queue_name(queue);
    s.queue := queue;
    s.max_attempts := max_attempts;
    s.visibility_timeout := visibility_timeout;
    s.retry_base := retry_base;
    s.retry_max := retry_max;
    s.retry_factor := retry_factor;
    s.jitter := jitter;
    s.keep_completed := keep_completed;
    s.max_payload_bytes := max_payload_bytes;
    s.unlogged := coalesce(unlogged, false);
    s.notify := coalesce(notify, true);
    perform pgmq_jobs._check_settings(s);

    -- Serialise concurrent create/drop of the same queue.
    perform pg_advisory_xact_lock(hashtext('pgmq_jobs.queue:' || queue));

    if exists (select from pgmq_jobs.queue_settings as qs where qs.queue = create_queue.queue) then
        raise notice 'queue % already exists; its settings are unchanged (use pgmq_jobs.configure_queue)',
            quote_literal(queue);
        return false;
    end if;

    if s.unlogged then
        perform pgmq.create_unlogged(queue);
    else
        perform pgmq.create(queue);
    end if;
    perform pgmq.create(queue || '_dlq');

    s.created_at := now();
    s.updated_at := now();
    insert into pgmq_jobs.queue_settings values (s.*);
    return true;
end
$$;

comment on function pgmq_jobs.create_queue(
    text, integer, interval, interval, interval, double precision, text, interval, integer, boolean,
    boolean
) is
'Create a job queue: the PGMQ queue, its dead-letter queue <queue>_dlq and its retry policy.
Idempotent: on an existing queue it changes nothing and returns false (use configure_queue).
Backoff after failed attempt n: min(retry_max, retry_base * retry_factor^(n-1)) with jitter
none | full | equal. keep_completed = 0 deletes completed jobs instead of archiving them.
unlogged queues are faster but lose their jobs if PostgreSQL crashes. notify: enqueues wake
idle workers through NOTIFY pgmq_jobs_<queue> at commit (workers also poll).';
