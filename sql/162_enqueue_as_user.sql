-- 162_enqueue_as_user.sql: enqueue_as_user, the enqueue that signed-in users
-- may call (through PostgREST on Supabase): only into the queues an admin
-- allowed their role with pgmq_jobs.allow_enqueue.

create or replace function pgmq_jobs.enqueue_as_user(queue text, payload jsonb)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    -- The calling role: PostgREST runs requests under SET ROLE authenticated,
    -- which SECURITY DEFINER leaves alone (current_user here is the owner).
    caller text := pgmq_jobs._actor();
begin
    -- One error for unlisted and unknown queues alike: callers learn nothing
    -- about queues they may not use.
    if queue is null or not exists (
        select from pgmq_jobs.enqueue_allowlist as a
        where a.queue = enqueue_as_user.queue
            and pg_catalog.pg_has_role(
                caller, pg_catalog.to_regrole(pg_catalog.quote_ident(a.role_name)), 'usage'
            )
    ) then
        raise exception 'role % may not enqueue into queue %',
            pg_catalog.quote_ident(caller), coalesce(pg_catalog.quote_literal(queue), 'null')
            using errcode = '42501',
            hint = 'An admin allows it with pgmq_jobs.allow_enqueue(queue, role).';
    end if;
    return pgmq_jobs.enqueue(queue, payload);
end
$$;

comment on function pgmq_jobs.enqueue_as_user(text, jsonb) is
'Enqueue one job as the calling role (SET ROLE role, e.g. PostgREST''s authenticated, else the
login role) into a queue that pgmq_jobs.allow_enqueue allowed for it or a role it has the
privileges of; any other queue, known or not, is refused (SQLSTATE 42501). Executable only
by roles allow_enqueue granted it to. Same payload rules as enqueue; returns the job id.';

revoke all on function pgmq_jobs.enqueue_as_user(text, jsonb) from public;
