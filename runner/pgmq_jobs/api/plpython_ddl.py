"""The DDL that installs ``plpy/`` as PL/Python functions (schema ``pgmq_jobs_plpy``): the
statements :mod:`pgmq_jobs.ops.plpython` generates from the modules' source, written here like
every other statement the package sends."""

from __future__ import annotations


def function_ddl(
    schema: str,
    signature: str,
    identity: str,
    returns: str,
    attributes: str,
    body: str,
    comment: str,
    admin_role: str,
) -> str:
    """One ``language plpython3u`` function, its comment and its grants (admin only)."""
    quote = "$plpy$"
    if quote in body:
        raise ValueError(f"the body of {schema}.{identity} contains {quote}, which ends it")
    qualified = f"{schema}.{identity}"
    escaped = comment.replace("'", "''")
    return (
        f"create or replace function {schema}.{signature}\n"
        f"returns {returns}\n"
        f"language plpython3u\n"
        f"{attributes}\n"
        f"set search_path = pg_catalog, pg_temp\n"
        f"as {quote}{body}{quote};\n\n"
        f"comment on function {qualified} is '{escaped}';\n\n"
        f"revoke all on function {qualified} from public;\n"
        f"grant execute on function {qualified} to {admin_role};\n"
    )


def schema_ddl(schema: str, admin_role: str) -> str:
    return (
        f"create schema if not exists {schema};\n"
        f"comment on schema {schema} is 'pgmq-jobs PL/Python support for self-hosted "
        f"PostgreSQL (pgmq-jobs install --with-plpython), generated from plpy/';\n"
        f"revoke all on schema {schema} from public;\n"
        f"grant usage on schema {schema} to {admin_role};\n"
    )


def api_roles_revoke(schema: str) -> str:
    """Where global default privileges hand new functions to Supabase's API roles (anon,
    authenticated), take them back, as sql/900_grants.sql does for pgmq_jobs: only the admin
    may run these SECURITY DEFINER functions."""
    return f"""
do $api_roles$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select from pg_catalog.pg_roles where rolname operator(pg_catalog.=) r) then
            execute pg_catalog.format('revoke all on all functions in schema {schema} from %I', r);
            execute pg_catalog.format('revoke all on schema {schema} from %I', r);
        end if;
    end loop;
end
$api_roles$;
"""
