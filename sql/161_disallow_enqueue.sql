-- 161_disallow_enqueue.sql: disallow_enqueue, take back allow_enqueue.

create or replace function pgmq_jobs.disallow_enqueue(queue text, role_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    removed boolean;
begin
    perform pgmq_jobs._settings(queue);
    if role_name is null then
        raise exception 'role_name must not be null' using errcode = '22004';
    end if;
    -- Revoking the owner's USAGE on its own schema would break every function
    -- wherever the owner is not a superuser (Supabase), and re-install with it.
    if pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) = (
        select n.nspowner from pg_catalog.pg_namespace as n where n.nspname = 'pgmq_jobs'
    ) then
        raise exception 'role % owns schema pgmq_jobs: disallow_enqueue cannot take its rights away',
            pg_catalog.quote_ident(role_name)
            using errcode = '22023',
            hint = 'Name the role that allow_enqueue let in.';
    end if;
    delete from pgmq_jobs.enqueue_allowlist as a
    where a.queue = disallow_enqueue.queue and a.role_name = disallow_enqueue.role_name;
    removed := found;
    if removed then
        perform pgmq_jobs._audit(queue, 'disallow_enqueue', pg_catalog.jsonb_build_object('role', role_name));
    end if;
    -- A role with no queue left loses what allow_enqueue granted it (the
    -- pgmq_jobs roles keep their schema usage).
    if pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) is not null
        and not exists (
            select from pgmq_jobs.enqueue_allowlist as a
            where a.role_name = disallow_enqueue.role_name
        ) then
        execute pg_catalog.format(
            'revoke execute on function pgmq_jobs.enqueue_as_user(text, jsonb) from %I', role_name
        );
        if role_name not in ('pgmq_jobs_producer', 'pgmq_jobs_worker', 'pgmq_jobs_admin') then
            execute pg_catalog.format('revoke usage on schema pgmq_jobs from %I', role_name);
        end if;
    end if;
    return removed;
end
$$;

comment on function pgmq_jobs.disallow_enqueue(text, text) is
'Stop role_name from enqueueing into queue through pgmq_jobs.enqueue_as_user. When no queue is
left for the role, revoke what allow_enqueue granted it. Returns false when it was not allowed.';

revoke all on function pgmq_jobs.disallow_enqueue(text, text) from public;
