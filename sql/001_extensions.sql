-- 001_extensions.sql: optional extensions the schema can use where the server
-- offers them: pg_partman (partitioned queues). pg_cron is created by the
-- installer and the migration prologue (it may live in this database only).

do $extensions$
begin
    if not exists (select from pg_catalog.pg_extension where extname operator(pg_catalog.=) 'pg_partman')
        and exists (select from pg_catalog.pg_available_extensions where name operator(pg_catalog.=) 'pg_partman') then
        create schema if not exists partman;
        create extension pg_partman schema partman;
    end if;
end
$extensions$;
