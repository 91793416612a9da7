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
    changes jsonb;
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
    -- A handler given is bound by identity now (the caller must hold EXECUTE on
    -- it); giving the same one again binds it anew (after it was re-created).
    if handler = '' then
        s.handler := null;
        s.handler_oid := null;
    elsif handler is not null then
        s.handler_oid := pgmq_jobs._handler_oid(handler, pgmq_jobs._actor());
        s.handler := pgmq_jobs._handler_name(s.handler_oid);
    end if;
    s.dead_letter_retention := coalesce(dead_letter_retention, s.dead_letter_retention);
    s.concurrency := case when concurrency = -1 then s.concurrency else concurrency end;
    s.payload_schema := case
        when payload_schema = 'null'::jsonb then null
        else coalesce(payload_schema, s.payload_schema)
    end;
    perform pgmq_jobs._check_settings(s);
    select coalesce(jsonb_object_agg(n.key, jsonb_build_object('from', o.value, 'to', n.value)), '{}')
    into changes
    from jsonb_each(to_jsonb(s)) as n
    join jsonb_each(to_jsonb(old)) as o on o.key = n.key
    where n.value is distinct from o.value and n.key <> 'updated_at';
    -- Nothing changes: nothing is written, nothing audited.
    if changes = '{}' then
        perform pgmq_jobs._sync_handler_job(queue);
        return old;
    end if;
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
        updated_at = s.updated_at,
        handler_oid = s.handler_oid
    where qs.queue = configure_queue.queue;
    perform pgmq_jobs._sync_handler_job(queue);
    perform pgmq_jobs._audit(queue, 'configure_queue', changes || case
        when handler <> '' then pgmq_jobs._handler_check_record(s.handler_oid) else '{}'::jsonb
    end);
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
JSON null removes it). handler => ''schema.fn'': a function taking one jsonb that the caller
may execute, bound by identity now; name it again to bind it anew once it was re-created (or
after a dump and restore). Every change is recorded in the audit view (a call that changes
nothing writes nothing).';
