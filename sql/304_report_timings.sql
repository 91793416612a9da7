-- 304_report_timings.sql: report_timings, a runner reports how long its jobs'
-- handlers ran, for the processing-time columns of queue_stats.

create or replace function pgmq_jobs.report_timings(queue text, durations_ms real[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    -- Histogram bucket bounds in ms, as documented in 300_private_stats.sql.
    bounds double precision[] := '{1,2,5,10,25,50,100,250,500,1000,2500,5000,10000,30000,60000,300000}';
    n integer := cardinality(durations_ms);
begin
    perform pgmq_jobs._settings(queue);
    if durations_ms is null or array_position(durations_ms, null) is not null then
        raise exception 'durations_ms must be an array of milliseconds without nulls'
            using errcode = '22004';
    end if;
    if n > 100000 then
        raise exception 'at most 100000 durations per call, got %', n using errcode = '22023';
    end if;
    if n = 0 then
        return 0;
    end if;
    if exists (select from unnest(durations_ms) as d (v) where not (v >= 0 and v < 'infinity')) then
        raise exception 'durations_ms must be finite and non-negative' using errcode = '22023';
    end if;
    -- One row per call (never per job, never an update of a shared row).
    insert into pgmq_jobs.timing_log (queue, jobs, total_ms, max_ms, hist)
    select
        queue,
        n,
        (select sum(d.v) from unnest(durations_ms) as d (v)),
        (select max(d.v) from unnest(durations_ms) as d (v)),
        array(
            select count(b.i)::integer
            from generate_series(1, 17) as g (i)
            left join (
                select (select count(*) from unnest(bounds) as x (bound) where x.bound < d.v) + 1 as i
                from unnest(durations_ms) as d (v)
            ) as b on g.i = b.i
            group by g.i
            order by g.i
        );
    -- Keep an hour: drop this queue's older rows, a bounded batch per call,
    -- skipping rows another caller is already deleting.
    delete from pgmq_jobs.timing_log as t
    where t.ctid in (
        select o.ctid from pgmq_jobs.timing_log as o
        where o.queue = report_timings.queue and o.at < clock_timestamp() - interval '1 hour'
        order by o.at
        limit 100
        for update skip locked
    );
    return n;
end
$$;

comment on function pgmq_jobs.report_timings(text, real[]) is
'Report how long handlers of jobs of a queue ran, in milliseconds (one call for a batch of
jobs, e.g. with each complete). Appends one row with the count, sum, maximum and a histogram
(never per job, never an update of a shared row); queue_stats derives the average and the 95th
percentile over its 5-minute window. Rows are kept for an hour. Returns how many were recorded.';

grant execute on function pgmq_jobs.report_timings(text, real[]) to pgmq_jobs_worker;
