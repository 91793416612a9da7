-- 012_private_payload_schema.sql: a queue's payload_schema refers to nothing
-- outside itself. A JSON Schema validator resolves a "$ref" that names a file
-- or a URL by reading that file or fetching that URL on the database server
-- (and again at every enqueue); only references within the schema itself,
-- those starting with '#', are accepted when a schema is configured.

-- An error naming the first reference ($ref, $dynamicRef or $recursiveRef,
-- at any depth) that does not start with '#'.
create or replace function pgmq_jobs._check_schema_refs(schema jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    bad text;
begin
    select r.keyword || ' ' || (r.ref #>> '{}') into bad
    from (
        select '$ref' as keyword, jsonb_path_query(schema, 'lax $.**."$ref"') as ref
        union all
        select '$dynamicRef', jsonb_path_query(schema, 'lax $.**."$dynamicRef"')
        union all
        select '$recursiveRef', jsonb_path_query(schema, 'lax $.**."$recursiveRef"')
    ) as r
    where jsonb_typeof(r.ref) = 'string' and not starts_with(r.ref #>> '{}', '#')
    limit 1;
    if bad is not null then
        raise exception 'payload_schema may refer only to itself: % is not a reference within the schema (one starting with #)',
            quote_literal(left(bad, 200))
            using errcode = '22023',
            hint = 'Put the referenced schema under "$defs" and refer to it as "#/$defs/<name>".';
    end if;
end
$$;
