-- 040_private_audit.sql: private helpers of the audit trail: who is acting,
-- and one append-only row per operator action.

-- The role acting: the SET ROLE role when there is one (PostgREST and
-- poolers switch roles that way), else the session's login role. The "role"
-- setting is trustworthy: PostgreSQL only lets a session set a role it is a
-- member of, and SECURITY DEFINER functions do not change it.
create or replace function pgmq_jobs._actor()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select case
        when coalesce(current_setting('role', true), 'none') = 'none' then session_user::text
        else current_setting('role', true)
    end
$$;

create or replace function pgmq_jobs._audit(queue text, action text, change jsonb)
returns void
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    insert into pgmq_jobs.audit_log (actor, queue, action, change, session_role)
    values (pgmq_jobs._actor(), queue, action, coalesce(change, '{}'), session_user::text)
$$;

-- The audit log is append-only, for its owner too.
create or replace function pgmq_jobs._audit_log_append_only()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    raise exception 'pgmq_jobs.audit_log is append-only' using errcode = '42501';
end
$$;

-- A DO block is parsed under the installing session's search_path: every
-- operator in it is schema-qualified (issue 18, finding 2; oid = regclass has
-- no exact match in pg_catalog, so one planted in public would run here).
do $trigger$
begin
    if not exists (
        select from pg_catalog.pg_trigger
        where tgname operator(pg_catalog.=) 'audit_log_append_only'
            and tgrelid operator(pg_catalog.=) 'pgmq_jobs.audit_log'::pg_catalog.regclass
    ) then
        create trigger audit_log_append_only
        before update or delete or truncate on pgmq_jobs.audit_log
        for each statement execute function pgmq_jobs._audit_log_append_only();
    end if;
end
$trigger$;
