-- 302_alert_thresholds.sql: the thresholds of the alerts view (a default per
-- alert, optionally one per queue) and set_alert_threshold to change them.

create table if not exists pgmq_jobs.alert_thresholds (
    alert text not null,
    queue text,
    threshold double precision not null,
    updated_at timestamptz not null default pg_catalog.now(),
    -- Constraints are bound when created, under that session's search_path: the
    -- operators are schema-qualified so that nothing planted is bound into them
    -- (issue 18, finding 2: float8 >= int4 has no exact match in pg_catalog).
    -- sql/upgrades/0.1.0--0.2.0.sql re-creates both on existing databases.
    constraint alert_thresholds_alert_check check (
        alert operator(pg_catalog.=) any( -- noqa: LT01
            array[
                'queue_depth', 'dead_letters', 'low_throughput', 'stalled_workers', 'oldest_job_age',
                'xmin_horizon', 'table_bloat', 'wraparound'
            ]
        )
    ),
    constraint alert_thresholds_threshold_check check (threshold operator(pg_catalog.>=) 0::double precision) -- noqa: LT01
);
create unique index if not exists alert_thresholds_alert_queue_idx
on pgmq_jobs.alert_thresholds (alert, coalesce(queue, ''));
comment on table pgmq_jobs.alert_thresholds is
'Alert thresholds: queue null is the default of an alert, a queue''s row overrides it; change
them with pgmq_jobs.set_alert_threshold';

-- The defaults (a re-install keeps thresholds already set).
insert into pgmq_jobs.alert_thresholds (alert, queue, threshold)
values
('queue_depth', null, 10000),
('dead_letters', null, 100),
('low_throughput', null, 10),
('stalled_workers', null, 0),
('oldest_job_age', null, 300),
('xmin_horizon', null, 300),
('table_bloat', null, 0.5),
('wraparound', null, 0.5)
on conflict do nothing;

create or replace function pgmq_jobs.set_alert_threshold(
    alert text,
    threshold double precision,
    queue text default null
)
returns double precision
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    known text[] := array[
        'queue_depth', 'dead_letters', 'low_throughput', 'stalled_workers', 'oldest_job_age',
        'xmin_horizon', 'table_bloat', 'wraparound'
    ];
    previous double precision;
    effective double precision;
begin
    if alert is null or not alert = any(known) then
        raise exception 'unknown alert %: use one of %', coalesce(quote_literal(alert), 'null'),
            array_to_string(known, ', ')
            using errcode = '22023';
    end if;
    if threshold is not null and (threshold < 0 or threshold = 'NaN'::double precision) then
        raise exception 'threshold must be a non-negative number (''infinity'' turns the alert off), got %',
            threshold
            using errcode = '22023';
    end if;
    if queue is not null then
        if alert in ('xmin_horizon', 'wraparound') then
            raise exception 'alert % is about the whole database and has no per-queue threshold', alert
                using errcode = '22023';
        end if;
        perform pgmq_jobs._settings(queue);
    elsif threshold is null then
        raise exception 'threshold must not be null for the default of alert % (null removes a queue''s own threshold)',
            alert
            using errcode = '22004';
    end if;

    select t.threshold into previous
    from pgmq_jobs.alert_thresholds as t
    where t.alert = set_alert_threshold.alert and t.queue is not distinct from set_alert_threshold.queue;

    if threshold is null then
        delete from pgmq_jobs.alert_thresholds as t
        where t.alert = set_alert_threshold.alert and t.queue = set_alert_threshold.queue;
    else
        update pgmq_jobs.alert_thresholds as t
        set threshold = set_alert_threshold.threshold, updated_at = clock_timestamp()
        where t.alert = set_alert_threshold.alert
            and t.queue is not distinct from set_alert_threshold.queue;
        if not found then
            insert into pgmq_jobs.alert_thresholds (alert, queue, threshold, updated_at)
            values (set_alert_threshold.alert, set_alert_threshold.queue, set_alert_threshold.threshold,
                clock_timestamp());
        end if;
    end if;

    select coalesce(
        (select t.threshold from pgmq_jobs.alert_thresholds as t
            where t.alert = set_alert_threshold.alert and t.queue = set_alert_threshold.queue),
        (select t.threshold from pgmq_jobs.alert_thresholds as t
            where t.alert = set_alert_threshold.alert and t.queue is null)
    ) into effective;
    perform pgmq_jobs._audit(
        queue, 'set_alert_threshold',
        jsonb_build_object('alert', alert, 'threshold', threshold, 'previous', previous)
    );
    return effective;
end
$$;

comment on function pgmq_jobs.set_alert_threshold(text, double precision, text) is
'Set the threshold of an alert of the alerts view: the default for every queue (queue null), or
one queue''s own (threshold null removes it, so the default applies again). Alerts: queue_depth
(ready jobs), dead_letters, low_throughput (completions per second while jobs wait),
stalled_workers (how many may be stalled), oldest_job_age (seconds), table_bloat (dead-tuple
ratio 0..1), xmin_horizon (seconds) and wraparound (share of autovacuum_freeze_max_age); the
last two have no per-queue value. ''infinity'' turns an alert off. Returns the threshold now in
effect for that queue (or the default).';

revoke all on pgmq_jobs.alert_thresholds from public;
grant select on pgmq_jobs.alert_thresholds to pgmq_jobs_admin;
