"""Durations on the command line: parsed by the database, printed one way, checked floors;
every CLI error is one line (issue 20, items 5 and 6)."""

from __future__ import annotations

import argparse
import json
import socket
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from test_cli import cli

import pgmq_jobs.client as jobs
from pgmq_jobs.cli import build_parser
from pgmq_jobs.durations import format_duration

Connection = psycopg.Connection[Any]


def _delay_of(conn: Connection, queue: str, job_id: int) -> timedelta:
    info = jobs.job(conn, queue, job_id)
    assert info is not None and info.visible_at is not None and info.enqueued_at is not None
    return info.visible_at - info.enqueued_at


@pytest.mark.parametrize(
    ("typed", "seconds"),
    [
        ("1h30m", 5400),  # PostgreSQL's interval accepts it as typed
        ("10 minutes", 600),
        ("90", 90),  # plain seconds
        ("90 s", 90),
        ("PT10M", 600),
        ("250ms", 0.25),
        ("1.5", 1.5),
    ],
)
def test_delay_as_people_type_it(
    db_dsn: str, conn: Connection, queue_name: str, typed: str, seconds: float
) -> None:
    jobs.create_queue(conn, queue_name)
    out = cli(db_dsn, "enqueue", queue_name, "{}", "--delay", typed)
    assert out.returncode == 0, out.stderr
    delay = _delay_of(conn, queue_name, int(out.stdout))
    # The delay counts from enqueue's clock reading; visible_at is taken in the same call.
    assert abs(delay.total_seconds() - seconds) < 0.5, delay


def test_negative_delay_gets_the_databases_error(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    out = cli(db_dsn, "enqueue", queue_name, "{}", "--delay", "-5s")
    assert out.returncode == 1
    assert out.stderr == "pgmq-jobs: error: delay must be at least 00:00:00, got -00:00:05\n"
    assert jobs.list_jobs(conn, queue_name) == []


def test_a_bad_duration_names_the_flag(db_dsn: str, conn: Connection, queue_name: str) -> None:
    out = cli(db_dsn, "queues", "create", queue_name, "--retry-base", "soon")
    assert out.returncode == 1
    assert out.stderr == (
        "pgmq-jobs: error: --retry-base 'soon': invalid input syntax for type interval: \"soon\"\n"
    )
    assert [q for q in jobs.queues(conn) if q["queue"] == queue_name] == []


@pytest.mark.parametrize("every", ["0s", "0", "0.5s", "-1s"])
def test_sweep_every_below_a_second_is_refused(db_dsn: str, every: str) -> None:
    out = cli(db_dsn, "sweep", "--every", every)
    assert out.returncode == 1
    assert out.stderr.startswith("pgmq-jobs: error: --every must be at least 00:00:01, got ")
    assert out.stderr.count("\n") == 1
    assert out.stdout == ""  # no sweep ran


def test_format_duration_is_postgresqls_interval_output(conn: Connection) -> None:
    typed = ["0", "90 s", "1h30m", "7d", "1 day 2 hours", "250ms", "-5s", "-26 hours", "25 h"]
    typed += ["1 day", "1.000001 s", "-0.5 s", "3 days 1 s", "100 days 23:59:59.999999"]
    for text in typed:
        row = conn.execute(
            "select %s::interval, justify_hours(%s::interval)::text", (text, text)
        ).fetchone()
        assert row is not None
        value, printed = row
        assert format_duration(value) == printed, text
        # What is printed can be typed back.
        again = conn.execute("select %s::interval", (format_duration(value),)).fetchone()
        assert again == (value,)


def test_durations_print_one_way_in_queues_and_configure(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    out = cli(db_dsn, "queues", "create", queue_name, "--retry-base", "1h30m", "--retry-max", "2h")
    assert out.returncode == 0, out.stderr
    table = cli(db_dsn, "queues").stdout.splitlines()
    header = table[0].split()
    [row] = [line.split() for line in table[1:] if line.split()[0] == queue_name]
    assert row[header.index("retry_base")] == "01:30:00"
    assert row[header.index("retry_max")] == "02:00:00"
    assert row[header.index("visibility_timeout")] == "00:00:30"
    out = cli(db_dsn, "queues", "configure", queue_name, "--visibility-timeout", "PT2M")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert (lines["visibility_timeout"], lines["retry_base"]) == ("00:02:00", "01:30:00")
    # The database's own errors print intervals the same way.
    out = cli(db_dsn, "queues", "configure", queue_name, "--retry-max", "1 minute")
    assert out.stderr == (
        "pgmq-jobs: error: retry_max (00:01:00) must be at least retry_base (01:30:00)\n"
    )
    # JSON gives seconds, before or after the sub-verb.
    for args in (("queues", "--json", "list"), ("queues", "list", "--json")):
        listing = json.loads(cli(db_dsn, *args).stdout)
        [q] = [q for q in listing if q["queue"] == queue_name]
        assert (q["retry_base"], q["visibility_timeout"]) == (5400.0, 120.0)


def test_every_error_is_one_line_exit_1(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        failing = [
            ("nosuchverb",),
            ("enqueue",),
            ("enqueue", queue_name, "[1, 2]"),
            ("enqueue", queue_name, "{"),
            ("enqueue", "no_such_queue", "{}"),
            ("enqueue", queue_name, "{}", "--delay", "soon"),
            ("enqueue", queue_name, "{}", "--run-at", "someday"),
            ("enqueue", queue_name, "{}", "--priority", "high"),
            ("queues", "drop", queue_name),
            ("queues", "create", "bad\nname"),
            ("dlq", "replay", queue_name),
            ("dlq", "replay", queue_name, "12345"),
            ("dlq", "purge", queue_name),
            ("dlq", "show", queue_name, "12345"),
            ("jobs", "show", queue_name, "12345"),
            ("jobs", "cancel", queue_name, "12345"),
            ("jobs", "reschedule", queue_name, "1"),
            ("jobs", "list", queue_name, "--state", "sleeping"),
            ("schedules", "remove", "no_such_schedule"),
            ("sweep", "--every", "0s"),
            ("stats", "--watch", "0s"),
            ("exporter", "--host", "127.0.0.1", "--port", port),
        ]
        for args in failing:
            out = cli(db_dsn, *args)
            assert out.returncode == 1, (args, out.stderr)
            assert out.stderr.startswith("pgmq-jobs: error: "), (args, out.stderr)
            assert out.stderr.count("\n") == 1 and out.stderr.endswith("\n"), (args, out.stderr)
            assert "Traceback" not in out.stderr
        exporter = cli(db_dsn, "exporter", "--host", "127.0.0.1", "--port", port)
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in exporter.stderr
    unreachable = cli("postgresql://127.0.0.1:1/nowhere", "queues")
    assert unreachable.returncode == 1 and unreachable.stderr.count("\n") == 1
    assert unreachable.stderr.startswith("pgmq-jobs: error: ")


MY_VERBS = {"dev", "install", "enqueue", "queues", "dlq", "jobs", "audit", "schedules", "sweep"}
MY_VERBS |= {"stats", "workers", "alerts", "exporter", "worker", "serve", "demo", "dashboard"}


def _verbs(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Any]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((" ".join((*path, name)), sub))
                found.extend(_verbs(sub, (*path, name)))
    return found


def test_every_verb_has_a_description_and_an_example() -> None:
    parser = build_parser()
    verbs = [(name, p) for name, p in _verbs(parser) if name.split()[0] in MY_VERBS]
    assert {name.split()[0] for name, _ in verbs} == MY_VERBS
    for name, sub in verbs:
        text = sub.format_help()
        assert sub.description, name
        assert "example" in text and f"pgmq-jobs {name.split()[0]}" in text.split("example")[-1], (
            name
        )
    summary = parser.format_help()
    for verb in MY_VERBS:
        assert f"\n    {verb}" in summary
    assert "getting started:" in summary and "pgmq-jobs: error:" in summary
