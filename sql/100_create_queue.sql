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
    notify boolean default true,
    handler text default null,
    dead_letter_retention interval default null,
    concurrency integer default null,
    partitioned boolean default false,
    partition_interval text default '10000',
    retention_interval text default '100000'
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
    -- The handler is bound by identity now (and the caller must hold EXECUTE on it).
    if handler is not null then
        s.handler_oid := pgmq_jobs._handler_oid(handler, pgmq_jobs._actor());
        s.handler := pgmq_jobs._handler_name(s.handler_oid);
    end if;
    s.dead_letter_retention := dead_letter_retention;
    s.concurrency := concurrency;
    s.partitioned := coalesce(partitioned, false);
    if s.partitioned then
        if s.unlogged then
            raise exception 'a queue cannot be both partitioned and unlogged' using errcode = '22023';
        end if;
        if partition_interval is null or retention_interval is null
            or partition_interval !~ '^[0-9a-z ]{1,40}$' or retention_interval !~ '^[0-9a-z ]{1,40}$' then
            raise exception 'partition_interval and retention_interval must be a number of jobs (''10000'') or a time interval (''1 day''), got % and %',
                coalesce(quote_literal(partition_interval), 'null'),
                coalesce(quote_literal(retention_interval), 'null')
                using errcode = '22023';
        end if;
        if (partition_interval ~ '^[0-9]+$') <> (retention_interval ~ '^[0-9]+$') then
            raise exception 'partition_interval and retention_interval must both be job counts or both time intervals'
                using errcode = '22023';
        end if;
        if pgmq_jobs._partman_schema() is null then
            raise exception 'partitioned queues need the pg_partman extension, which is not installed here'
                using errcode = '55000',
                hint = 'create extension pg_partman (Debian: postgresql-15-partman), then re-run pgmq-jobs install.';
        end if;
        s.partition_interval := partition_interval;
        s.retention_interval := retention_interval;
    end if;
    perform pgmq_jobs._check_settings(s);

    -- Serialise concurrent create/drop of the same queue.
    perform pg_advisory_xact_lock(hashtext('pgmq_jobs.queue:' || queue));

    if exists (select from pgmq_jobs.queue_settings as qs where qs.queue = create_queue.queue) then
        raise notice 'queue % already exists; its settings are unchanged (use pgmq_jobs.configure_queue)',
            quote_literal(queue);
        return false;
    end if;

    if s.partitioned then
        perform pgmq.create_partitioned(queue, s.partition_interval, s.retention_interval);
        -- pg_partman's retention may drop only completed jobs (the archive): on the
        -- queue table it would drop waiting, delayed or retrying jobs with their
        -- partition. And claim needs the vt index that create_partitioned omits.
        execute format(
            'update %I.part_config set retention = null where parent_table = %L',
            pgmq_jobs._partman_schema(),
            'pgmq.q_' || queue
        );
        execute format('create index if not exists %I on pgmq.%I (vt)', 'q_' || queue || '_vt_idx', 'q_' || queue);
    elsif s.unlogged then
        perform pgmq.create_unlogged(queue);
    else
        perform pgmq.create(queue);
    end if;
    perform pgmq.create(queue || '_dlq');
    s.priority_index := pgmq_jobs._queue_indexes(queue, s.partitioned);
    s.prioritized := false;
    perform pgmq_jobs._revoke_monitor_read(queue);

    s.created_at := now();
    s.updated_at := now();
    insert into pgmq_jobs.queue_settings values (s.*);
    perform pgmq_jobs._sync_handler_job(queue);
    perform pgmq_jobs._sync_partman_job();
    perform pgmq_jobs._audit(queue, 'create_queue', to_jsonb(s) - 'queue' - 'created_at' - 'updated_at'
        || pgmq_jobs._handler_check_record(s.handler_oid));
    return true;
end
$$;

comment on function pgmq_jobs.create_queue(
    text, integer, interval, interval, interval, double precision, text, interval, integer, boolean,
    boolean, text, interval, integer, boolean, text, text
) is
'Create a job queue: the PGMQ queue, its dead-letter queue <queue>_dlq and its retry policy.
Idempotent: on an existing queue it changes nothing and returns false (use configure_queue).
Backoff after failed attempt n: min(retry_max, retry_base * retry_factor^(n-1)) with jitter
none | full | equal. keep_completed = 0 deletes completed jobs instead of archiving them.
unlogged queues are faster but lose their jobs if PostgreSQL crashes. notify: enqueues wake
idle workers through NOTIFY pgmq_jobs_<queue> at commit (workers also poll). handler names a
SQL function fn(payload jsonb) that runs the jobs inside the database (see process; pg_cron
drives it). dead_letter_retention: the sweep drops dead letters older than that (null: keep).
concurrency: at most that many jobs of the queue in flight across all workers (null: no limit).
partitioned: a PGMQ partitioned queue through pg_partman, partitioned by job id when
partition_interval is a number, else by enqueue time; retention_interval applies to the
archive only (never to waiting jobs). Everything else works the same on it.';
