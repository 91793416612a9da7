-- 142_audit.sql: view audit, the trail of operator actions.

create or replace view pgmq_jobs.audit as
select
    a.id,
    a.at,
    a.actor as role,
    a.queue,
    a.action,
    a.change,
    a.session_role
from pgmq_jobs.audit_log as a;

comment on view pgmq_jobs.audit is
'Operator actions, append-only: acting role (the SET ROLE role when there is one), time,
queue, action (create_queue, configure_queue, drop_queue, replay, purge_dead_letters,
schedule, unschedule, ...), what changed, and session_role, the session''s login role.
Job completions are not audited (the archive is their record).';
