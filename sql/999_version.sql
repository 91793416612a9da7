-- 999_version.sql: record the schema version (the last file of sql/).

insert into pgmq_jobs.schema_version (version) values ('0.2.0')
on conflict (version) do nothing;
