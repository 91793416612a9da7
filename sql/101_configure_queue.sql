-- 101_configure_queue.sql: configure_queue, change a queue's settings.

create or replace function pgmq_jobs.configure_queue(
    queue text,
    max_attempts integer default null,
    visibility_timeout interval default null,
    retry_base interval default null,
    retry_max interval default null,
    retry_factor double precision default null,
    jitter text default null,
    keep_completed interval default null,
    max_payload_bytes integer default null,
    notify boolean default null,
    handler text default null,
    dead_letter_retention interval default null,
    -- -1 (the default) keeps the limit; null removes it; 0 pauses the queue.
    concurrency integer default -1,
    -- A JSON Schema for payloads; 'null'::jsonb removes it, null keeps it.
    payload_schema jsonb default null
)
returns pgmq_jobs.queue_settings
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings;
    old pgmq_jobs.queue_settings;
begin
    perform pgmq_jobs._settings(queue);
    select * into strict s from pgmq_jobs.queue_settings as qs
    where qs.queue = configure_queue.queue
    for update;
    old := s;
    s.max_attempts := coalesce(max_attempts, s.max_attempts);
    s.visibility_timeout := coalesce(visibility_timeout, s.visibility_timeout);
    s.retry_base := coalesce(retry_base, s.retry_base);
    s.retry_max := coalesce(retry_max, s.retry_max);
    s.retry_factor := coalesce(retry_factor, s.retry_factor);
    s.jitter := coalesce(jitter, s.jitter);
    s.keep_completed := coalesce(keep_completed, s.keep_completed);
    s.max_payload_bytes := coalesce(max_payload_bytes, s.max_payload_bytes);
    s.notify := coalesce(notify, s.notify);
    -- '' clears the handler / the retention ('0' means drop at once), null keeps it.
    s.handler := case when handler = '' then null else coalesce(handler, s.handler) end;
    s.dead_letter_retention := coalesce(dead_letter_retention, s.dead_letter_retention);
    s.concurrency := case when concurrency = -1 then s.concurrency else concurrency end;
    s.payload_schema := case
        when payload_schema = 'null'::jsonb then null
        else coalesce(payload_schema, s.payload_schema)
    end;
    perform pgmq_jobs._check_settings(s);
    s.updated_at := now();
    update pgmq_jobs.queue_settings as qs set
        max_attempts = s.max_attempts,
        visibility_timeout = s.visibility_timeout,
        retry_base = s.retry_base,
        retry_max = s.retry_max,
        retry_factor = s.retry_factor,
        jitter = s.jitter,
        keep_completed = s.keep_completed,
        max_payload_bytes = s.max_payload_bytes,
        notify = s.notify,
        handler = s.handler,
        dead_letter_retention = s.dead_letter_retention,
        concurrency = s.concurrency,
        payload_schema = s.payload_schema,
        updated_at = s.updated_at
    where qs.queue = configure_queue.queue;
    perform pgmq_jobs._sync_handler_job(queue);
    perform pgmq_jobs._audit(queue, 'configure_queue', (
        select coalesce(jsonb_object_agg(n.key, jsonb_build_object('from', o.value, 'to', n.value)), '{}')
        from jsonb_each(to_jsonb(s)) as n
        join jsonb_each(to_jsonb(old)) as o on o.key = n.key
        where n.value is distinct from o.value and n.key <> 'updated_at'
    ));
    return s;
end
$$;

comment on function pgmq_jobs.configure_queue(
    text, integer, interval, interval, interval, double precision, text, interval, integer, boolean,
    text, interval, integer, jsonb
) is
'Change settings of an existing queue; arguments left null keep their value. Returns the new
settings. Validated as a whole: an invalid value changes nothing. Applies to deliveries and
failures from now on (jobs already waiting keep the delay they were given). handler => ''
removes the queue''s SQL handler (and its pg_cron job). concurrency: a limit on jobs in
flight (0 pauses the queue), null removes the limit, omitted keeps it. payload_schema: a JSON
Schema every enqueued payload must satisfy (needs PL/Python support or pg_jsonschema; the
JSON null removes it). Every change is recorded in the audit view.';
