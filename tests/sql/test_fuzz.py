"""Bad input, fuzzed: every public SQL function and the CLI verbs, with hypothesis.

Each call either succeeds as specified or fails with a clear error: a SQLSTATE from the
expected set (22xxx data exceptions, 42704 unknown queue or role, 54xxx too large, 55000
prerequisite missing, plus 42501 for enqueue_as_user's refusal), a non-empty message, and
never an internal error (SQL syntax, a missing relation, function or column, a PGMQ stack).
A failing call leaves no partial change: the queues, PGMQ's queue list, the relations of
schema pgmq and the content of every pgmq and pgmq_jobs table are as they were.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import pgmq_jobs.client as jobs

Connection = psycopg.Connection[Any]

CLI = str(Path(sys.executable).with_name("pgmq-jobs"))

# Inputs tried, per function (the last test prints the total).
TRIED: Counter[str] = Counter()

SQL_EXAMPLES = 120
CLI_EXAMPLES = 30

FUZZ = settings(
    max_examples=SQL_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

QUEUES = ("fz_small", "fz_plain", "fz_handled")
SMALL_LIMIT = 1000  # max_payload_bytes of fz_small

# Messages that betray an internal error rather than a checked argument.
INTERNAL = re.compile(
    r"syntax error|relation .* does not exist|function .* does not exist"
    r"|column .* does not exist|operator does not exist|cache lookup failed"
    r"|could not find|unexpected|internal",
    re.IGNORECASE,
)
PGMQ_STACK = re.compile(r"function pgmq\.")

# ---------------------------------------------------------------- strategies

text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
any_text = st.text(text_chars, max_size=60)

HOSTILE_NAMES = [
    "",
    " fz_plain",
    "fz_plain ",
    "fz_plain\n",
    "fz_plain;drop table pgmq.meta",
    "fz_plain'--",
    'fz_"plain',
    "fz_plain_dlq",
    "fz_small_dlq",
    "q_fz_plain",
    "pgmq.q_fz_plain",
    "meta",
    "pg_temp",
    "\uff46\uff5a_plain",  # fullwidth
    "fz_pla\u0131n",  # dotless i
    "fz-plain",
    "1fz",
    "_fz",
    "a" * 43 + "b",
    "q" * 43,
    "x" * 5000,
    "fz_plain%s",
    "fz_plain\\",
    "$1",
]


def _case_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name.upper(), name.title(), name.swapcase(), name.capitalize()])


queue_names: st.SearchStrategy[str | None] = st.one_of(
    st.sampled_from(QUEUES),
    st.sampled_from(QUEUES).flatmap(_case_variants),
    st.sampled_from(HOSTILE_NAMES),
    st.from_regex(r"[a-z][a-z0-9_]{0,45}", fullmatch=True),
    any_text,
    st.none(),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(text_chars, max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(text_chars, max_size=8), children)
    ),
    max_leaves=12,
)


def _deep(depth: int, kind: str) -> str:
    if kind == "array":
        return '{"d": ' + "[" * depth + "]" * depth + "}"
    return '{"a": ' * depth + "1" + "}" * depth


payload_texts: st.SearchStrategy[str | None] = st.one_of(
    st.dictionaries(st.text(text_chars, max_size=10), json_values, max_size=5).map(json.dumps),
    json_values.map(json.dumps),  # mostly not objects
    st.builds(_deep, st.integers(50, 20000), st.sampled_from(["array", "object"])),
    st.integers(SMALL_LIMIT - 20, SMALL_LIMIT + 40).map(lambda n: json.dumps({"s": "x" * n})),
    st.sampled_from(
        [
            "null",
            "[]",
            '"text"',
            "NaN",
            '{"a": NaN}',
            '{"a": Infinity}',
            '{"a": "\\u0000"}',
            '{"a": 1',
            "{}",
            '{"a": 1, "a": 2}',
            '{"big": ' + "9" * 2000 + "}",
            "",
        ]
    ),
    st.none(),
)

intervals: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.timedeltas(min_value=timedelta(days=-(10**6)), max_value=timedelta(days=10**6)),
    st.timedeltas(min_value=timedelta(seconds=-5), max_value=timedelta(seconds=120)),
    st.sampled_from(
        [
            "0",
            "-1 s",
            "1 microsecond",
            "infinity",
            "-infinity",
            "1e308 seconds",
            "178000000 years",
            "-178000000 years",
            "2147483647 days",
            "P1Y2M",
            "1 fortnight",
            "",
            "garbage",
            "1 mon",
            "3651 days",
            "24:00:00.000001",
        ]
    ),
)

ints: st.SearchStrategy[int | None] = st.one_of(
    st.none(),
    st.integers(-5, 10),
    st.sampled_from([0, -1, 1000, 1001, 100000, 100001, 2**31 - 1, 2**31, -(2**31), 2**63 - 1]),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(10**25), 10**25),
)
floats: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=4000),
)
timestamps: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from(["infinity", "-infinity", "epoch", "294277-01-01", "4714-11-24 BC", "now!"]),
)
cron_exprs: st.SearchStrategy[str | None] = st.one_of(
    st.none(),
    any_text,
    st.lists(
        st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "*/0", "jan", "sun-sat", "x"]),
        min_size=3,
        max_size=7,
    ).map(" ".join),
    st.sampled_from(
        ["@hourly", "@reboot", "30 seconds", "0 seconds", "60 seconds", "* * * * *", "x" * 300]
    ),
)
bigint_arrays: st.SearchStrategy[list[int | None] | None] = st.one_of(
    st.none(), st.lists(st.one_of(st.integers(-3, 30), st.none(), ints), max_size=5)
)
int_arrays: st.SearchStrategy[list[int | None] | None] = st.one_of(
    st.none(), st.lists(st.one_of(st.integers(-3, 5), st.none()), max_size=5)
)


# ---------------------------------------------------------------- the harness


SNAPSHOT = """
select
    (select coalesce(jsonb_agg(to_jsonb(q) order by q.queue), '[]') from pgmq_jobs.queues q),
    (select array_agg(l.queue_name::text order by 1) from pgmq.list_queues() l),
    (select array_agg(c.relname::text order by 1) from pg_class c
        where c.relnamespace = 'pgmq'::regnamespace),
    (select jsonb_object_agg(n.nspname || '.' || c.relname, (xpath('/row/h/text()', query_to_xml(
        format('select count(*) || md5(coalesce(string_agg(t::text, ''|'' order by t::text),'
               ' '''')) as h from %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname in ('pgmq', 'pgmq_jobs') and c.relkind in ('r', 'p'))
"""


SWEEP_LOCK = "select pg_advisory_lock(hashtext('pgmq_jobs.sweep'))"
SWEEP_UNLOCK = "select pg_advisory_unlock(hashtext('pgmq_jobs.sweep'))"


def snapshot(conn: Connection) -> tuple[Any, ...]:
    row = conn.execute(SNAPSHOT).fetchone()
    assert row is not None
    return tuple(row)


def assert_clear_error(exc: psycopg.Error, extra: frozenset[str] = frozenset()) -> None:
    state = exc.sqlstate or ""
    message = exc.diag.message_primary or ""
    context = exc.diag.context or ""
    assert state.startswith("22") or state in {"42704", "54000", "54001", "55000"} | extra, (
        state,
        message,
        context,
    )
    assert message.strip(), (state, context)
    assert not INTERNAL.search(message), (state, message, context)
    assert not PGMQ_STACK.search(context), (state, message, context)


@dataclass
class Fuzz:
    conn: Connection
    dsn: str

    def call(
        self, name: str, query: str, params: dict[str, Any], extra: frozenset[str] = frozenset()
    ) -> list[tuple[Any, ...]] | None:
        """Run one call; on error check it is clear and changed nothing. Returns the rows, or
        None when the call was refused."""
        TRIED[name] += 1
        # The shared database's pg_cron sweep writes history and retention between the two
        # snapshots otherwise; holding the sweep's lock makes it skip its turn meanwhile.
        self.conn.execute(SWEEP_LOCK)
        try:
            before = snapshot(self.conn)
            try:
                cur = self.conn.execute(query, params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
            except psycopg.Error as exc:
                error = exc
            assert_clear_error(error, extra)
            assert snapshot(self.conn) == before, f"{name} failed but changed something: {error}"
            return None
        finally:
            self.conn.execute(SWEEP_UNLOCK)

    def stored(self, queue: str, job_id: int, payload: str | None) -> bool:
        """Job job_id of queue holds exactly payload (compared as jsonb, in the database)."""
        row = self.conn.execute(
            sql.SQL("select message = %s::jsonb from pgmq.{} where msg_id = %s").format(
                sql.Identifier(f"q_{queue}")
            ),
            (payload, job_id),
        ).fetchone()
        return row == (True,)

    def object_within(self, payload: str | None, queue: str) -> bool:
        """payload is a JSON object no larger than the queue's limit (as the docs say)."""
        row = self.conn.execute(
            "select jsonb_typeof(%s::jsonb) = 'object' and octet_length(%s::jsonb::text)"
            " <= (select max_payload_bytes from pgmq_jobs.queues where queue = %s)",
            (payload, payload, queue),
        ).fetchone()
        return row == (True,)


def valid_queue_name(name: str) -> bool:
    return (
        bool(re.fullmatch(r"[a-z][a-z0-9_]*", name))
        and len(name) <= 43
        and not name.endswith("_dlq")
    )


@pytest.fixture
def fuzz(fresh_db: Callable[[], str]) -> Iterator[Fuzz]:
    """A fresh database (no pg_cron) with three queues, jobs in every state and a handler."""
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create schema fz")
        conn.execute(
            "create function fz.ok(payload jsonb) returns void language sql"
            " set search_path = pg_catalog, pg_temp as 'select'"
        )
        jobs.create_queue(conn, "fz_small", max_payload_bytes=SMALL_LIMIT, max_attempts=2)
        jobs.create_queue(conn, "fz_plain")
        jobs.create_queue(conn, "fz_handled", handler="fz.ok")
        for queue in QUEUES:
            jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(4)])
            claimed = jobs.claim(conn, queue, 2)
            jobs.fail(conn, queue, claimed[0].job_id, claimed[0].attempt, "e", permanent=True)
        conn.execute("select pgmq_jobs.allow_enqueue('fz_plain', 'pgmq_jobs_producer')")
        yield Fuzz(conn, dsn)


# ---------------------------------------------------------------- queues


@FUZZ
@given(
    name=queue_names,
    max_attempts=ints,
    visibility_timeout=intervals,
    retry_factor=floats,
    jitter=st.one_of(st.none(), st.sampled_from(["none", "full", "equal", "FULL", "", "x"])),
    max_payload_bytes=ints,
)
def test_fuzz_create_queue(
    fuzz: Fuzz,
    name: str | None,
    max_attempts: int | None,
    visibility_timeout: Any,
    retry_factor: Any,
    jitter: str | None,
    max_payload_bytes: int | None,
) -> None:
    rows = fuzz.call(
        "create_queue",
        "select pgmq_jobs.create_queue(%(name)s, max_attempts => %(ma)s::integer,"
        " visibility_timeout => coalesce(%(vt)s::interval, '30 s'),"
        " retry_factor => coalesce(%(rf)s::float8, 2), jitter => coalesce(%(j)s, 'full'),"
        " max_payload_bytes => coalesce(%(mpb)s::integer, 1048576))",
        {
            "name": name,
            "ma": 5 if max_attempts is None else max_attempts,
            "vt": visibility_timeout,
            "rf": retry_factor,
            "j": jitter,
            "mpb": max_payload_bytes,
        },
    )
    if rows is None:
        return
    assert name is not None and valid_queue_name(name), name
    [(created,)] = rows
    listed = fuzz.conn.execute("select 1 from pgmq_jobs.queues where queue = %s", (name,))
    assert listed.fetchone() == (1,)  # exactly that name: never rewritten
    if created:
        assert name not in QUEUES
        jobs.drop_queue(fuzz.conn, name)
    else:
        assert name in QUEUES


@FUZZ
@given(
    name=queue_names,
    max_attempts=ints,
    retry_base=intervals,
    retry_max=intervals,
    keep_completed=intervals,
    handler=st.one_of(
        st.none(), st.sampled_from(["", "fz.ok", "fz.nope", "FZ.OK", "fz.ok(jsonb)", "ok", "a.b.c"])
    ),
    dead_letter_retention=intervals,
)
def test_fuzz_configure_queue(
    fuzz: Fuzz,
    name: str | None,
    max_attempts: int | None,
    retry_base: Any,
    retry_max: Any,
    keep_completed: Any,
    handler: str | None,
    dead_letter_retention: Any,
) -> None:
    rows = fuzz.call(
        "configure_queue",
        "select (pgmq_jobs.configure_queue(%(name)s, max_attempts => %(ma)s::integer,"
        " retry_base => %(rb)s::interval, retry_max => %(rm)s::interval,"
        " keep_completed => %(kc)s::interval, handler => %(h)s,"
        " dead_letter_retention => %(dlr)s::interval)).*",
        {
            "name": name,
            "ma": max_attempts,
            "rb": retry_base,
            "rm": retry_max,
            "kc": keep_completed,
            "h": handler,
            "dlr": dead_letter_retention,
        },
        # A handler that is no function: named as such (42883), checked before any change.
        extra=frozenset({"42883"}) if handler else frozenset(),
    )
    if rows is None:
        return
    assert name in QUEUES
    [(current,)] = fuzz.conn.execute(
        "select max_attempts from pgmq_jobs.queues where queue = %s", (name,)
    ).fetchall()
    if max_attempts is not None:
        assert current == max_attempts and 1 <= max_attempts <= 1000


@FUZZ
@given(name=st.one_of(queue_names, st.just("fz_victim")))
def test_fuzz_drop_queue(fuzz: Fuzz, name: str | None) -> None:
    if name in QUEUES:
        name = "fz_victim"  # never the fixture's queues; the victim is recreated
    if fuzz.conn.execute("select 1 from pgmq_jobs.queues where queue = 'fz_victim'").fetchone():
        pass
    else:
        jobs.create_queue(fuzz.conn, "fz_victim")
        jobs.enqueue(fuzz.conn, "fz_victim", {"v": 1})
    rows = fuzz.call("drop_queue", "select pgmq_jobs.drop_queue(%(name)s)", {"name": name})
    if rows is None:
        return
    assert name == "fz_victim" and rows == [(True,)]
    gone = fuzz.conn.execute(
        "select to_regclass('pgmq.q_fz_victim'), to_regclass('pgmq.q_fz_victim_dlq')"
    )
    assert gone.fetchone() == (None, None)


# ---------------------------------------------------------------- enqueue


@FUZZ
@given(
    queue=queue_names,
    payload=payload_texts,
    delay=intervals,
    run_at=timestamps,
    max_attempts=ints,
)
def test_fuzz_enqueue(
    fuzz: Fuzz, queue: str | None, payload: str | None, delay: Any, run_at: Any, max_attempts: Any
) -> None:
    rows = fuzz.call(
        "enqueue",
        "select pgmq_jobs.enqueue(%(q)s, %(p)s::jsonb, delay => %(d)s::interval,"
        " run_at => %(r)s::timestamptz, max_attempts => %(m)s::integer)",
        {"q": queue, "p": payload, "d": delay, "r": run_at, "m": max_attempts},
    )
    if rows is None:
        return
    assert queue in QUEUES and fuzz.object_within(payload, queue)
    [(job_id,)] = rows
    assert fuzz.stored(queue, job_id, payload)


@FUZZ
@given(
    queue=queue_names,
    payloads=st.one_of(st.none(), st.lists(payload_texts, max_size=6)),
    delay=intervals,
    max_attempts=ints,
)
def test_fuzz_enqueue_batch(
    fuzz: Fuzz, queue: str | None, payloads: list[str | None] | None, delay: Any, max_attempts: Any
) -> None:
    rows = fuzz.call(
        "enqueue_batch",
        "select * from pgmq_jobs.enqueue_batch(%(q)s, %(p)s::text[]::jsonb[],"
        " delay => %(d)s::interval, max_attempts => %(m)s::integer)",
        {"q": queue, "p": payloads, "d": delay, "m": max_attempts},
    )
    if rows is None:
        return
    assert queue in QUEUES and payloads is not None and len(rows) == len(payloads)
    assert all(fuzz.object_within(p, queue) for p in payloads)
    assert all(fuzz.stored(queue, r[0], p) for r, p in zip(rows, payloads, strict=True))


@FUZZ
@given(queue=queue_names, payload=payload_texts)
def test_fuzz_enqueue_as_user(fuzz: Fuzz, queue: str | None, payload: str | None) -> None:
    rows = fuzz.call(
        "enqueue_as_user",
        "select pgmq_jobs.enqueue_as_user(%(q)s, %(p)s::jsonb)",
        {"q": queue, "p": payload},
        extra=frozenset({"42501"}),
    )
    if rows is None:
        return
    assert queue == "fz_plain"  # the only allowlisted queue
    assert fuzz.object_within(payload, queue) and fuzz.stored(queue, rows[0][0], payload)


@FUZZ
@given(
    queue=queue_names,
    role=st.one_of(
        st.none(),
        any_text,
        st.sampled_from(["pgmq_jobs_producer", "PGMQ_JOBS_PRODUCER", "public", "", "postgres"]),
    ),
    allow=st.booleans(),
)
def test_fuzz_allow_and_disallow_enqueue(
    fuzz: Fuzz, queue: str | None, role: str | None, allow: bool
) -> None:
    verb = "allow_enqueue" if allow else "disallow_enqueue"
    rows = fuzz.call(
        verb,
        f"select pgmq_jobs.{verb}(%(q)s, %(r)s)",  # type: ignore[str-format]
        {"q": queue, "r": role},
    )
    if rows is None:
        return
    assert queue in QUEUES and role is not None
    listed = fuzz.conn.execute(
        "select 1 from pgmq_jobs.enqueue_allowlist where queue = %s and role_name = %s",
        (queue, role),
    ).fetchone()
    assert (listed is not None) is allow


# ---------------------------------------------------------------- worker


@FUZZ
@given(
    queue=queue_names,
    qty=ints,
    visibility_timeout=intervals,
    worker=st.one_of(st.none(), any_text, st.just("w" * 201)),
)
def test_fuzz_claim(
    fuzz: Fuzz, queue: str | None, qty: int | None, visibility_timeout: Any, worker: str | None
) -> None:
    rows = fuzz.call(
        "claim",
        "select job_id, attempt from pgmq_jobs.claim(%(q)s, %(n)s::integer, %(vt)s::interval,"
        " %(w)s)",
        {"q": queue, "n": qty, "vt": visibility_timeout, "w": worker},
    )
    if rows is None:
        return
    assert queue in QUEUES and qty is not None and 1 <= qty <= 1000
    assert len(rows) <= qty
    # Put them back so later examples still find ready jobs.
    if rows:
        fuzz.conn.execute(
            sql.SQL("update pgmq.{} set vt = clock_timestamp() where msg_id = any(%s)").format(
                sql.Identifier(f"q_{queue}")
            ),
            ([r[0] for r in rows],),
        )


@pytest.mark.parametrize("fn", ["complete", "release"])
@FUZZ
@given(queue=queue_names, job_ids=bigint_arrays, attempts=int_arrays)
def test_fuzz_outcome_batch(
    fuzz: Fuzz, fn: str, queue: str | None, job_ids: list[int | None] | None, attempts: Any
) -> None:
    """complete and release take the same parallel arrays of deliveries."""
    rows = fuzz.call(
        fn,
        f"select pgmq_jobs.{fn}(%(q)s, %(j)s::numeric[]::bigint[], %(a)s::numeric[]::integer[])",
        {"q": queue, "j": job_ids, "a": attempts},
    )
    if rows is None:
        return
    assert queue in QUEUES and job_ids is not None and attempts is not None
    assert len(job_ids) == len(attempts) and None not in job_ids and None not in attempts
    assert 0 <= rows[0][0] <= len(job_ids)


@FUZZ
@given(
    queue=queue_names,
    job_id=st.one_of(ints, st.integers(-2, 12)),
    attempt=st.one_of(ints, st.integers(-1, 3)),
    error=st.one_of(st.none(), any_text, st.just("x" * 20000)),
    retry_after=intervals,
    permanent=st.one_of(st.none(), st.booleans()),
)
def test_fuzz_fail(
    fuzz: Fuzz,
    queue: str | None,
    job_id: int | None,
    attempt: int | None,
    error: str | None,
    retry_after: Any,
    permanent: bool | None,
) -> None:
    rows = fuzz.call(
        "fail",
        "select outcome from pgmq_jobs.fail(%(q)s, %(j)s::numeric::bigint,"
        " %(a)s::numeric::integer, %(e)s, %(ra)s::interval, %(p)s)",
        {"q": queue, "j": job_id, "a": attempt, "e": error, "ra": retry_after, "p": permanent},
    )
    if rows is None:
        return
    assert queue in QUEUES and job_id is not None and job_id >= 1
    assert attempt is not None and attempt >= 1 and permanent is not None
    assert rows[0][0] in {"retry", "dead", "stale"}


@FUZZ
@given(
    queue=queue_names,
    job_ids=bigint_arrays,
    attempts=int_arrays,
    errors=st.one_of(st.none(), st.lists(st.one_of(st.none(), any_text), max_size=5)),
    retry_after=st.one_of(
        st.none(),
        st.lists(
            st.one_of(
                st.none(),
                st.timedeltas(min_value=timedelta(seconds=-5), max_value=timedelta(days=5000)),
            ),
            max_size=5,
        ),
    ),
    permanent=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.booleans()), max_size=5)),
)
def test_fuzz_fail_batch(
    fuzz: Fuzz,
    queue: str | None,
    job_ids: list[int | None] | None,
    attempts: list[int | None] | None,
    errors: list[str | None] | None,
    retry_after: list[timedelta | None] | None,
    permanent: list[bool | None] | None,
) -> None:
    rows = fuzz.call(
        "fail_batch",
        "select job_id, outcome from pgmq_jobs.fail_batch(%(q)s, %(j)s::numeric[]::bigint[],"
        " %(a)s::numeric[]::integer[], %(e)s::text[], %(ra)s::interval[], %(p)s::boolean[])",
        {"q": queue, "j": job_ids, "a": attempts, "e": errors, "ra": retry_after, "p": permanent},
    )
    if rows is None:
        return
    assert queue in QUEUES and job_ids is not None and attempts is not None and errors is not None
    assert len(job_ids) == len(attempts) == len(errors) and len(set(job_ids)) == len(job_ids)
    assert None not in job_ids and None not in attempts and None not in (permanent or [])
    assert all(
        timedelta(0) <= r <= timedelta(days=3650) for r in retry_after or [] if r is not None
    )
    assert [r[0] for r in rows] == job_ids
    assert {r[1] for r in rows} <= {"retry", "dead", "stale"}


@FUZZ
@given(
    queue=queue_names,
    job_id=st.one_of(ints, st.integers(-2, 12)),
    attempt=st.one_of(ints, st.integers(-1, 3)),
    by=intervals,
)
def test_fuzz_extend(
    fuzz: Fuzz, queue: str | None, job_id: int | None, attempt: int | None, by: Any
) -> None:
    rows = fuzz.call(
        "extend",
        "select pgmq_jobs.extend(%(q)s, %(j)s::numeric::bigint, %(a)s::numeric::integer,"
        " %(b)s::interval)",
        {"q": queue, "j": job_id, "a": attempt, "b": by},
    )
    if rows is None:
        return
    assert queue in QUEUES and job_id is not None and job_id >= 1 and by is not None
    assert rows[0][0] is None or isinstance(rows[0][0], datetime)


@FUZZ
@given(
    queue=queue_names,
    lim=ints,
    dead_ids=st.one_of(st.none(), bigint_arrays),
    older_than=intervals,
    verb=st.sampled_from(["dead_letters", "replay", "purge_dead_letters"]),
)
def test_fuzz_dead_letters_replay_purge(
    fuzz: Fuzz, queue: str | None, lim: Any, dead_ids: Any, older_than: Any, verb: str
) -> None:
    query, params = {
        "dead_letters": (
            "select dead_id from pgmq_jobs.dead_letters(%(q)s, %(x)s::numeric::integer)",
            lim,
        ),
        "replay": ("select pgmq_jobs.replay(%(q)s, %(x)s::numeric[]::bigint[])", dead_ids),
        "purge_dead_letters": (
            "select pgmq_jobs.purge_dead_letters(%(q)s, %(x)s::interval)",
            older_than,
        ),
    }[verb]
    rows = fuzz.call(verb, query, {"q": queue, "x": params})
    if rows is None:
        return
    assert queue in QUEUES
    if verb == "dead_letters":
        assert lim is not None and 1 <= lim <= 100000 and len(rows) <= lim
    else:
        assert rows[0][0] >= 0


# ---------------------------------------------------------------- schedules, sweep, process


@FUZZ
@given(
    name=st.one_of(
        st.none(), any_text, st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,70}", fullmatch=True)
    ),
    cron=cron_exprs,
    queue=queue_names,
    payload=payload_texts,
)
def test_fuzz_schedule_without_pg_cron(
    fuzz: Fuzz, name: str | None, cron: str | None, queue: str | None, payload: str | None
) -> None:
    rows = fuzz.call(
        "schedule",
        "select pgmq_jobs.schedule(%(n)s, %(c)s, %(q)s, %(p)s::jsonb)",
        {"n": name, "c": cron, "q": queue, "p": payload},
    )
    assert rows is None, "schedule cannot succeed without pg_cron"


@settings(FUZZ, max_examples=50)
@given(
    name=st.one_of(any_text, st.sampled_from(["nightly", "a" * 64, "bad name"])),
    cron=cron_exprs,
    queue=st.one_of(st.sampled_from(QUEUES), queue_names),
)
def test_fuzz_schedule_with_pg_cron(
    conn: Connection, name: str, cron: str | None, queue: str | None
) -> None:
    # The shared database has pg_cron: valid schedules succeed (and are removed again).
    for q in QUEUES:
        jobs.create_queue(conn, q)
    fuzz = Fuzz(conn, "")
    rows = fuzz.call(
        "schedule",
        "select pgmq_jobs.schedule(%(n)s, %(c)s, %(q)s, '{}')",
        {"n": f"fz{name}" if name else name, "c": cron, "q": queue},
    )
    if rows is None:
        return
    assert queue in QUEUES and cron is not None
    assert jobs.unschedule(conn, f"fz{name}") is True


@FUZZ
@given(name=st.one_of(st.none(), any_text))
def test_fuzz_unschedule(fuzz: Fuzz, name: str | None) -> None:
    rows = fuzz.call("unschedule", "select pgmq_jobs.unschedule(%(n)s)", {"n": name})
    if rows is None:
        return
    assert name is not None and rows == [(False,)]


@FUZZ
@given(max_rows=ints, cron_history=intervals, count_cap=ints)
def test_fuzz_sweep(fuzz: Fuzz, max_rows: Any, cron_history: Any, count_cap: Any) -> None:
    rows = fuzz.call(
        "sweep",
        "select pgmq_jobs.sweep(coalesce(%(m)s::numeric::integer, 10000),"
        " coalesce(%(c)s::interval, '7 days'), coalesce(%(k)s::numeric::integer, 100000))",
        {"m": max_rows, "c": cron_history, "k": count_cap},
    )
    if rows is None:
        return
    assert rows[0][0]["skipped"] is False


@FUZZ
@given(queue=queue_names, max_jobs=ints, max_seconds=floats)
def test_fuzz_process(fuzz: Fuzz, queue: str | None, max_jobs: Any, max_seconds: Any) -> None:
    rows = fuzz.call(
        "process",
        "select pgmq_jobs.process(%(q)s, %(j)s::numeric::integer, %(s)s::float8)",
        {"q": queue, "j": max_jobs, "s": max_seconds},
    )
    if rows is None:
        return
    assert queue == "fz_handled"  # the only queue with a handler
    assert rows[0][0]["claimed"] <= max_jobs


@FUZZ
@given(
    worker_id=st.one_of(st.none(), any_text, st.just("w" * 201)),
    queues=st.one_of(st.none(), st.lists(st.one_of(queue_names), max_size=3)),
    pid=ints,
    jobs_done=ints,
    in_flight=ints,
    interval=intervals,
    stopping=st.one_of(st.none(), st.booleans()),
)
def test_fuzz_heartbeat(
    fuzz: Fuzz,
    worker_id: str | None,
    queues: Any,
    pid: Any,
    jobs_done: Any,
    in_flight: Any,
    interval: Any,
    stopping: Any,
) -> None:
    rows = fuzz.call(
        "heartbeat",
        "select pgmq_jobs.heartbeat(%(w)s, %(q)s::text[], 'host', %(pid)s::numeric::integer,"
        " %(d)s::numeric::bigint, 0, %(f)s::numeric::integer,"
        " coalesce(%(i)s::interval, '5 s'), %(s)s)",
        {
            "w": worker_id,
            "q": queues,
            "pid": pid,
            "d": jobs_done,
            "f": in_flight,
            "i": interval,
            "s": stopping,
        },
    )
    if rows is None:
        return
    assert worker_id and queues is not None and None not in queues
    assert isinstance(rows[0][0], datetime)


# ---------------------------------------------------------------- the CLI


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    return subprocess.run(
        [CLI, *args, "--dsn", dsn], capture_output=True, text=True, timeout=60, env=env
    )


cli_args = st.text(text_chars, max_size=30)
cli_calls = st.one_of(
    st.tuples(
        st.just("enqueue"),
        st.one_of(st.sampled_from(QUEUES), queue_names.filter(bool).map(str), cli_args),
        st.one_of(
            payload_texts.filter(lambda p: p is not None and len(p) < 5000).map(str), cli_args
        ),
    ),
    st.tuples(
        st.just("enqueue"),
        st.sampled_from(QUEUES),
        st.just("{}"),
        st.just("--delay"),
        st.sampled_from(["-1s", "1e9d", "10m", "x", "0.000001ms", "3651d", "99999999999d"]),
    ),
    st.tuples(
        st.just("enqueue"),
        st.sampled_from(QUEUES),
        st.just("{}"),
        st.just("--max-attempts"),
        st.sampled_from(["0", "-1", "1001", "2147483648", "99999999999", "x"]),
    ),
    st.tuples(
        st.just("queues"), st.just("create"), st.one_of(queue_names.filter(bool).map(str), cli_args)
    ),
    st.tuples(
        st.just("queues"),
        st.just("drop"),
        st.one_of(queue_names.filter(bool).map(str), cli_args),
        st.just("--yes"),
    ),
    st.tuples(
        st.just("dlq"),
        st.sampled_from(["list", "purge"]),
        st.one_of(queue_names.filter(bool).map(str), cli_args),
        st.just("--all"),
    ),
    st.tuples(
        st.just("dlq"),
        st.just("list"),
        st.sampled_from(QUEUES),
        st.just("--limit"),
        st.sampled_from(["0", "-5", "100001", "2147483648", "99999999999"]),
    ),
    st.tuples(
        st.just("dlq"),
        st.just("replay"),
        st.sampled_from(QUEUES),
        st.sampled_from(["0", "-1", "99999999999999999999", "1"]),
    ),
    st.tuples(
        st.just("schedules"),
        st.just("add"),
        st.one_of(cli_args, st.just("nightly")),
        st.one_of(cron_exprs.filter(bool).map(str), cli_args),
        st.sampled_from(QUEUES),
    ),
    st.tuples(st.just("schedules"), st.just("remove"), cli_args),
    st.tuples(st.just("sweep")),
)


@settings(FUZZ, max_examples=CLI_EXAMPLES)
@given(argv=cli_calls)
def test_fuzz_cli(fuzz: Fuzz, argv: tuple[str, ...]) -> None:
    if argv[:3] == ("queues", "drop", *argv[2:3]) and argv[2] in QUEUES:
        argv = (*argv[:2], "fz_victim", *argv[3:])
    TRIED["cli " + argv[0]] += 1
    before = snapshot(fuzz.conn)
    out = _cli(fuzz.dsn, *argv)
    assert "Traceback" not in out.stderr, (argv, out.stderr)
    if out.returncode == 0:
        if argv[:2] == ("queues", "create") and "created queue" in out.stdout:
            assert valid_queue_name(argv[2])
            jobs.drop_queue(fuzz.conn, argv[2])
        return
    # Every error, a usage mistake or the database's refusal, is one line and exit 1.
    assert out.returncode == 1, (argv, out.returncode, out.stderr)
    lines = out.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pgmq-jobs: error: "), (argv, out.stderr)
    assert not INTERNAL.search(lines[0]) and len(lines[0]) > len("pgmq-jobs: error: ")
    assert snapshot(fuzz.conn) == before, (argv, out.stderr)


def test_cli_huge_duration_is_a_usage_error(fuzz: Fuzz) -> None:
    # Beyond what an interval holds: the database's error naming the flag, one line, no
    # traceback.
    for flag in ("--delay", "--older-than"):
        argv = ("enqueue", "fz_plain", "{}") if flag == "--delay" else ("dlq", "purge", "fz_plain")
        out = _cli(fuzz.dsn, *argv, flag, "99999999999d")
        assert out.returncode == 1, out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert f"{flag} '99999999999d'" in out.stderr and "out of range" in out.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("enqueue", "fz_plain", "{}", "--max-attempts", "99999999999"),
        ("dlq", "list", "fz_plain", "--limit", "99999999999"),
    ],
)
def test_cli_huge_integers_get_a_range_error(fuzz: Fuzz, argv: tuple[str, ...]) -> None:
    # Beyond int4: the range error, not "function ... does not exist" for a bigint argument.
    out = _cli(fuzz.dsn, *argv)
    assert out.returncode == 1
    assert "does not exist" not in out.stderr and "pgmq-jobs: error: " in out.stderr, out.stderr


# ---------------------------------------------------------------- the count


def test_fuzz_count(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    """Last in the module: how many inputs were tried (all of them, when the module ran)."""
    fuzzed = [
        item
        for item in request.session.items
        if item.module is request.module
        and item.name.startswith("test_fuzz_")
        and item.name != "test_fuzz_count"
    ]
    total = sum(TRIED.values())
    with capsys.disabled():
        print(f"\nfuzz: {total} inputs tried over {len(TRIED)} functions and verbs: {dict(TRIED)}")
    if len(fuzzed) < 19:
        pytest.skip("only part of the fuzz module ran")
    assert total >= 2000, TRIED
    sql_functions = {
        "create_queue", "configure_queue", "drop_queue", "enqueue", "enqueue_batch", "claim",
        "complete", "fail", "extend", "release", "dead_letters", "replay", "purge_dead_letters",
        "schedule", "unschedule", "sweep", "process", "heartbeat", "enqueue_as_user",
        "allow_enqueue", "disallow_enqueue",
    }  # fmt: skip
    assert sql_functions <= set(TRIED), sql_functions - set(TRIED)
    assert all(TRIED[f] >= 10 for f in sql_functions), TRIED
