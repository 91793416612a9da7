-- invoke_schedule.sql: let pg_cron poke the HTTP invoker through PL/Python
-- (pgmq_jobs_plpy.invoke), the self-hosted twin of pgmq_jobs.schedule_invoker
-- (which needs pg_net). Applied by `pgmq-jobs install --with-plpython` after the
-- generated functions; never part of sql/ or supabase/migrations.
--
-- The secret is not written into cron.job.command: it lives in
-- pgmq_jobs_plpy.invoker_secrets, readable only by its owner, next to the one
-- URL it may be sent to. The cron command names the secret; invoke_named (security
-- definer) looks it up at run time.
--
-- The pg_cron job of schedule_invoke(job_name, ...) is pgmq_jobs_invoke_<job_name>
-- (pgmq_jobs._invoke_job_name checks the name): neither it nor unschedule_invoke
-- can reach a foreign cron job or the project's own sweep, partman and handler
-- jobs.

create table if not exists pgmq_jobs_plpy.invoker_secrets (
    name text primary key,
    url text not null,
    secret text not null,
    updated_at timestamptz not null default now(),
    constraint invoker_secrets_name check (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    constraint invoker_secrets_url check (url ~ '^https?://[^/]'),
    constraint invoker_secrets_secret check (length(secret) >= 16)
);

revoke all on table pgmq_jobs_plpy.invoker_secrets from public;

comment on table pgmq_jobs_plpy.invoker_secrets is
'Shared secrets of HTTP invokers, each with the one URL it may be sent to. Readable only by
its owner: set with pgmq_jobs_plpy.set_invoker_secret, used by invoke_named.';

-- Create or replace a named invoker secret and the URL it belongs to.
create or replace function pgmq_jobs_plpy.set_invoker_secret(name text, url text, secret text)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if name is null or name !~ '^[a-z][a-z0-9_]{0,62}$' then
        raise exception 'secret name must match [a-z][a-z0-9_]*, got %', coalesce(quote_literal(name), 'null')
            using errcode = '22023';
    end if;
    if url is null or url !~ '^https?://[^/]' then
        raise exception 'url must be an http(s) URL of the invoker, got %', coalesce(quote_literal(url), 'null')
            using errcode = '22023';
    end if;
    if secret is null or length(secret) < 16 then
        raise exception 'secret must be at least 16 characters' using errcode = '22023';
    end if;
    insert into pgmq_jobs_plpy.invoker_secrets as s (name, url, secret)
    values (set_invoker_secret.name, set_invoker_secret.url, set_invoker_secret.secret)
    on conflict on constraint invoker_secrets_pkey do update
        set url = excluded.url, secret = excluded.secret, updated_at = now();
end
$$;

comment on function pgmq_jobs_plpy.set_invoker_secret(text, text, text) is
'Store (or replace) the shared secret of an HTTP invoker under a name, bound to the one URL
it may be sent to (pgmq_jobs_plpy.invoke_named refuses any other). At least 16 characters.';

-- The URL a named secret is bound to, or null (without revealing the secret).
create or replace function pgmq_jobs_plpy._invoker_url(secret_name text)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select s.url from pgmq_jobs_plpy.invoker_secrets as s where s.name = secret_name
$$;

comment on function pgmq_jobs_plpy._invoker_url(text) is
'The URL an invoker secret is bound to, or null when there is no secret of that name.';

-- POST to the invoker with a stored secret: what the cron job runs.
create or replace function pgmq_jobs_plpy.invoke_named(
    url text,
    queue text,
    secret_name text,
    max_seconds integer default 50,
    max_jobs integer default 1000,
    timeout_seconds double precision default 60
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s pgmq_jobs_plpy.invoker_secrets;
begin
    select * into s from pgmq_jobs_plpy.invoker_secrets as t where t.name = secret_name;
    if not found then
        raise exception 'no invoker secret named %', coalesce(quote_literal(secret_name), 'null')
            using errcode = '22023',
            hint = 'Store it with pgmq_jobs_plpy.set_invoker_secret(name, url, secret).';
    end if;
    if s.url is distinct from invoke_named.url then
        raise exception 'invoker secret % may only be sent to %, not %',
            quote_literal(secret_name), s.url, coalesce(invoke_named.url, 'null')
            using errcode = '42501';
    end if;
    return pgmq_jobs_plpy.invoke(s.url, queue, s.secret, max_seconds, max_jobs, timeout_seconds);
end
$$;

comment on function pgmq_jobs_plpy.invoke_named(text, text, text, integer, integer, double precision) is
'pgmq_jobs_plpy.invoke with the secret stored under secret_name (which must be bound to this
url): POST {"queue", "max_seconds", "max_jobs"} to the invoker and return its JSON summary.
This is the command pgmq_jobs_plpy.schedule_invoke gives pg_cron.';

-- A pg_cron job that pokes the invoker for one queue.
create or replace function pgmq_jobs_plpy.schedule_invoke(
    job_name text,
    cron text,
    url text,
    queue text,
    secret_name text,
    max_seconds integer default 50,
    max_jobs integer default 1000
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cron_name text := pgmq_jobs._invoke_job_name(job_name);
    problem text;
    bound_url text;
begin
    perform pgmq_jobs._require_cron();
    perform pgmq_jobs._settings(queue);
    problem := pgmq_jobs_plpy.cron_check(cron);
    if problem is not null then
        raise exception '%', problem using errcode = '22023';
    end if;
    perform pgmq_jobs._check_cron(cron);
    bound_url := pgmq_jobs_plpy._invoker_url(secret_name);
    if bound_url is null then
        raise exception 'no invoker secret named %', coalesce(quote_literal(secret_name), 'null')
            using errcode = '22023',
            hint = 'Store it first with pgmq_jobs_plpy.set_invoker_secret(name, url, secret).';
    end if;
    if bound_url is distinct from url then
        raise exception 'invoker secret % is bound to %, not %', quote_literal(secret_name), bound_url,
            coalesce(url, 'null')
            using errcode = '22023';
    end if;
    if max_seconds is null or max_seconds < 1 or max_seconds > 3600 then
        raise exception 'max_seconds must be between 1 and 3600, got %', coalesce(max_seconds::text, 'null')
            using errcode = '22023';
    end if;
    if max_jobs is not null and max_jobs < 1 then
        raise exception 'max_jobs must be positive, got %', max_jobs using errcode = '22023';
    end if;
    return pgmq_jobs._cron_schedule(cron_name, cron, format(
        'select pgmq_jobs_plpy.invoke_named(%L, %L, %L, %s, %s, %s)',
        url, queue, secret_name, max_seconds, coalesce(max_jobs::text, 'null'), max_seconds + 45
    ));
end
$$;

comment on function pgmq_jobs_plpy.schedule_invoke(text, text, text, text, text, integer, integer) is
'Create (or replace, by job_name) the pg_cron job pgmq_jobs_invoke_<job_name> that POSTs
{"queue", "max_seconds", "max_jobs"} to the invoker at url through PL/Python
(pgmq_jobs_plpy.invoke_named), with the secret stored under secret_name by set_invoker_secret:
the secret is not in cron.job.command. job_name: 1 to 46 lowercase letters, digits, _ . -.
pg_cron 1.4 schedules to the minute. Returns the cron job id; remove it with
unschedule_invoke(job_name).';

create or replace function pgmq_jobs_plpy.unschedule_invoke(job_name text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return pgmq_jobs._cron_unschedule(pgmq_jobs._invoke_job_name(job_name));
end
$$;

comment on function pgmq_jobs_plpy.unschedule_invoke(text) is
'Remove the pg_cron job pgmq_jobs_invoke_<job_name> made by schedule_invoke; true when one was
removed.';

revoke all on function
    pgmq_jobs_plpy.set_invoker_secret(text, text, text),
    pgmq_jobs_plpy._invoker_url(text),
    pgmq_jobs_plpy.invoke_named(text, text, text, integer, integer, double precision),
    pgmq_jobs_plpy.schedule_invoke(text, text, text, text, text, integer, integer),
    pgmq_jobs_plpy.unschedule_invoke(text)
from public;

grant execute on function
    pgmq_jobs_plpy.set_invoker_secret(text, text, text),
    pgmq_jobs_plpy.invoke_named(text, text, text, integer, integer, double precision),
    pgmq_jobs_plpy.schedule_invoke(text, text, text, text, text, integer, integer),
    pgmq_jobs_plpy.unschedule_invoke(text)
to pgmq_jobs_admin;
