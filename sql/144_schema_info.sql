-- 144_schema_info.sql: schema_info, the release a database runs and the
-- oldest client release it still serves. Workers and clients read it at
-- start and say so when their package is of another release.

create or replace function pgmq_jobs.schema_info(
    out version text,
    out oldest_client text,
    out installed_at timestamptz
)
returns record
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select
        v.version,
        -- Clients of this release and of the one before it: 0.2.0 keeps
        -- every signature that 0.1.0 workers and producers call.
        '0.1.0'::text,
        v.installed_at
    from pgmq_jobs.schema_version as v
    order by pg_catalog.string_to_array(v.version, '.')::integer [] desc
    limit 1
$$;

comment on function pgmq_jobs.schema_info() is
'The pgmq-jobs release this database runs (the newest of schema_version), the oldest client '
'release it still serves, and when that release was installed';
