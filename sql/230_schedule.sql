-- 230_schedule.sql: schedule, a cron-triggered enqueue through pg_cron.

create or replace function pgmq_jobs.schedule(
    name text, cron text, queue text, payload jsonb default '{}'
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs.queue_settings := pgmq_jobs._settings(queue);
    jobid bigint;
begin
    if name is null or name !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
        raise exception 'invalid schedule name %: use 1 to 63 lowercase letters, digits, _ . -',
            coalesce(quote_literal(left(name, 80)), 'null')
            using errcode = '22023';
    end if;
    perform pgmq_jobs._check_cron(cron);
    perform pgmq_jobs._check_payload(payload, s.max_payload_bytes);
    perform pgmq_jobs._require_cron();
    jobid := pgmq_jobs._cron_schedule(
        'pgmq_jobs_schedule_' || name,
        btrim(cron),
        format('select pgmq_jobs.enqueue(%L, %L::jsonb)', queue, payload::text)
    );
    insert into pgmq_jobs.schedule_settings as ss (name, cron, queue, payload)
    values (name, btrim(cron), queue, payload)
    on conflict on constraint schedule_settings_pkey do update set
        cron = excluded.cron,
        queue = excluded.queue,
        payload = excluded.payload,
        updated_at = now();
    perform pgmq_jobs._audit(queue, 'schedule',
        jsonb_build_object('name', name, 'cron', btrim(cron), 'payload', payload));
    return jobid;
end
$$;

comment on function pgmq_jobs.schedule(text, text, text, jsonb) is
'Create or update (by name) a pg_cron job that enqueues payload into queue on the cron
schedule: five fields, @hourly/@daily/@weekly/@monthly/@yearly, or with pg_cron 1.5+
''N seconds''. The expression is checked first and an error names the bad field. Returns the
pg_cron job id. Needs pg_cron in this database.';
