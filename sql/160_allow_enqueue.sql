-- 160_allow_enqueue.sql: allow_enqueue, let a role enqueue into one queue
-- through pgmq_jobs.enqueue_as_user (e.g. Supabase's authenticated role,
-- calling through PostgREST). Nothing is allowed until an admin says so.

-- Which roles may enqueue into which queue through enqueue_as_user. Rows go
-- when their queue is dropped. Roles are kept by name (as PostgreSQL's own
-- grants are dumped), so a dropped role's rows apply to a new role of that name.
create table if not exists pgmq_jobs.enqueue_allowlist (
    queue text not null references pgmq_jobs.queue_settings (queue) on delete cascade,
    role_name text not null,
    allowed_at timestamptz not null default pg_catalog.now(),
    primary key (queue, role_name)
);
comment on table pgmq_jobs.enqueue_allowlist is
'Roles allowed to enqueue into a queue through pgmq_jobs.enqueue_as_user; change it with
pgmq_jobs.allow_enqueue and pgmq_jobs.disallow_enqueue';
revoke all on pgmq_jobs.enqueue_allowlist from public;
grant select on pgmq_jobs.enqueue_allowlist to pgmq_jobs_admin;

create or replace function pgmq_jobs.allow_enqueue(queue text, role_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pgmq_jobs._settings(queue);
    if role_name is null then
        raise exception 'role_name must not be null' using errcode = '22004';
    end if;
    if pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) is null then
        raise exception 'unknown role %', pg_catalog.quote_ident(role_name)
            using errcode = '42704',
            hint = 'Give the role''s exact name, e.g. authenticated.';
    end if;
    -- The allowlist, not this grant, decides: enqueue_as_user refuses every
    -- queue the caller is not listed for.
    execute pg_catalog.format('grant usage on schema pgmq_jobs to %I', role_name);
    execute pg_catalog.format(
        'grant execute on function pgmq_jobs.enqueue_as_user(text, jsonb) to %I', role_name
    );
    insert into pgmq_jobs.enqueue_allowlist as a (queue, role_name)
    values (queue, role_name)
    on conflict on constraint enqueue_allowlist_pkey do nothing;
    if found then
        perform pgmq_jobs._audit(queue, 'allow_enqueue', pg_catalog.jsonb_build_object('role', role_name));
        return true;
    end if;
    return false;
end
$$;

comment on function pgmq_jobs.allow_enqueue(text, text) is
'Allow role_name to enqueue into queue through pgmq_jobs.enqueue_as_user(queue, payload), and
grant it usage on schema pgmq_jobs and execute on enqueue_as_user (nothing else). Returns
false when it was already allowed. Undo with pgmq_jobs.disallow_enqueue.';

revoke all on function pgmq_jobs.allow_enqueue(text, text) from public;
