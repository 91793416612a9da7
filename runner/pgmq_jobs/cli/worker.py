"""CLI verbs that run jobs: ``worker``, ``serve`` (the HTTP invoker) and ``demo``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgmq_jobs.cli.jobs import parse_duration, resolve_dsn, verb
from pgmq_jobs.errors import error_line

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def seconds(text: str) -> float:
    """A duration argument (``30``, ``250ms``, ``5m``) in seconds."""
    return parse_duration(text).total_seconds()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def setup_logging(level: str, log_format: str = "text") -> None:
    """stderr at ``level``, as text lines or (``json``) one JSON object per line."""
    from pgmq_jobs.worker.logs import setup_logging as setup

    setup(level, log_format)


def load_app(spec: str) -> Any:
    """Import ``module:registry``, with the current directory importable (like ``python -m``)."""
    from pgmq_jobs.registry import load_registry

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load_registry(spec)


# ---------------------------------------------------------------- worker


def app_queues(app: Any, spec: str) -> list[str]:
    """Every queue the registry ``app`` has a handler or task for (``worker`` without
    ``--queue``); a LookupError when it has none."""
    queues: list[str] = list(app.queues)
    if not queues:
        raise LookupError(f"{spec} registers no handler or task: nothing to work")
    return queues


def worker_options(args: argparse.Namespace) -> Any:
    from pgmq_jobs.worker import WorkerOptions

    return WorkerOptions(
        queues=list(dict.fromkeys(args.queue)),
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        poll_interval=args.poll_interval,
        listen=not args.no_listen,
        listen_dsn=args.listen_dsn,
        timeout=args.timeout,
        grace=args.grace,
        heartbeat_interval=args.heartbeat_interval,
        drain=args.drain,
        max_seconds=args.max_seconds,
        max_jobs=args.max_jobs,
        prepared=args.prepared,
        worker_id=args.worker_id,
    )


_NAMED = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)=(.+)", re.DOTALL)


def split_named(text: str) -> tuple[str | None, str]:
    """``NAME=URL`` as (NAME, URL); a plain DSN (URL or ``key=value …``) as (None, DSN)."""
    if not text.startswith(("postgresql://", "postgres://")):
        match = _NAMED.fullmatch(text)
        if match:
            try:
                conninfo_to_dict(text)  # a libpq keyword DSN such as "host=… dbname=…"
            except psycopg.ProgrammingError:
                return match.group(1), match.group(2)
    return None, text


def databases(dsn_args: list[str], listen_args: list[str]) -> list[Any]:
    """The databases of ``--dsn`` (repeatable, ``NAME=URL`` or a DSN named by its dbname)
    and their ``--listen-dsn NAME=URL`` connections."""
    from pgmq_jobs.worker import Database

    named: list[tuple[str, str]] = []
    for i, text in enumerate(dsn_args, start=1):
        name, dsn = split_named(text)
        if name is None:
            name = str(conninfo_to_dict(dsn).get("dbname") or f"db{i}")
        if name in {n for n, _ in named}:
            name = f"{name}{i}"
        named.append((name, dsn))
    listen: dict[str, str] = {}
    for text in listen_args:
        name, dsn = split_named(text)
        if name is None or name not in dict(named):
            raise ValueError(
                f"with several databases, --listen-dsn must be NAME=URL with NAME one of "
                f"{', '.join(n for n, _ in named)}; got {text.split('=', 1)[0]!r}"
            )
        listen[name] = dsn
    return [Database(name, dsn, listen.get(name)) for name, dsn in named]


def cmd_worker(args: argparse.Namespace) -> int:
    from pgmq_jobs.errors import describe
    from pgmq_jobs.ops.versions import VersionError
    from pgmq_jobs.worker import run_worker, run_worker_group

    setup_logging(args.log_level, args.log_format)
    dsns: list[str] = args.dsn or [resolve_dsn(argparse.Namespace(dsn=None))]
    listen_dsns: list[str] = args.listen_dsn or []
    try:
        app = load_app(args.app)
        args.queue = args.queue or app_queues(app, args.app)
        if len(dsns) == 1 and len(listen_dsns) <= 1:
            # One database: the plain worker (a NAME= prefix is allowed and ignored).
            args.listen_dsn = split_named(listen_dsns[0])[1] if listen_dsns else None
            dsn = split_named(dsns[0])[1]
            summary = run_worker(dsn, app, worker_options(args))
        else:
            args.listen_dsn = None
            group = databases(dsns, listen_dsns)
            summary = run_worker_group(group, app, worker_options(args))
    except psycopg.Error as exc:
        print(error_line(describe(exc)), file=sys.stderr)
        return 1
    except (LookupError, ValueError, ImportError, VersionError) as exc:
        print(error_line(_one_line(exc)), file=sys.stderr)
        return 1
    if args.drain or args.max_seconds is not None or args.max_jobs is not None:
        print(summary.to_json(), flush=True)
    else:
        logging.getLogger("pgmq_jobs.worker").info("stopped: %s", summary.to_json())
    return 0


def add_worker_parser(sub: SubParsers) -> None:
    p = verb(
        sub,
        "worker",
        "run jobs of one or more queues",
        [
            "pgmq-jobs worker --app myapp.jobs:app              # every queue the app knows",
            "pgmq-jobs worker --app myapp.jobs:app --queue emails --concurrency 20",
            "pgmq-jobs worker --app myapp.jobs:app --drain --max-seconds 50   # from a cron",
        ],
        description="Run the handlers of a registry (--app module:registry) on the jobs of "
        "its queues (or those --queue names), def handlers in a thread pool, async def ones on "
        "an event loop; SIGTERM finishes the jobs in flight and gives the unstarted ones back.",
    )
    p.add_argument(
        "--dsn",
        action="append",
        default=None,
        metavar="[NAME=]URL",
        help="database URL (default: $PGMQ_JOBS_DSN or $DATABASE_URL); repeat it to serve "
        "queues spread over several databases, each queue from the one where it exists",
    )
    p.add_argument(
        "--queue",
        action="append",
        default=None,
        help="queue to work (repeatable; default: every queue the --app registry knows)",
    )
    p.add_argument("--app", required=True, help="module:registry holding the handlers")
    p.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="handlers run at once: threads for def handlers, and as many event-loop tasks"
        " for async def ones (default 10)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="jobs claimed ahead of a free handler slot (default: automatic, as many as"
        " --concurrency"
        " and more, up to 300, for handlers that take milliseconds; 0: none)",
    )
    p.add_argument(
        "--poll-interval", type=seconds, default=1.0, help="poll fallback period (default 1s)"
    )
    p.add_argument(
        "--no-listen", action="store_true", help="poll only (transaction-pooling PgBouncer)"
    )
    p.add_argument(
        "--listen-dsn",
        action="append",
        default=None,
        metavar="[NAME=]URL",
        help="direct session connection for LISTEN (with several databases: NAME=URL each)",
    )
    p.add_argument("--timeout", type=seconds, default=None, help="default handler timeout")
    p.add_argument("--grace", type=seconds, default=30.0, help="shutdown grace (default 30s)")
    p.add_argument("--heartbeat-interval", type=seconds, default=5.0)
    p.add_argument("--drain", action="store_true", help="exit once nothing is ready")
    p.add_argument("--max-seconds", type=seconds, default=None, help="time budget")
    p.add_argument("--max-jobs", type=int, default=None, help="claim at most this many jobs")
    p.add_argument(
        "--prepared",
        action="store_true",
        help="use server-side prepared statements (direct connections only)",
    )
    p.add_argument("--worker-id", default=None, help="default: host:pid:random")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line with the structured fields of each"
        " record (queue, job_id, attempt, worker, error_type, error_message)",
    )
    p.set_defaults(func=cmd_worker)


# ---------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from pgmq_jobs.web.invoker import InvokerConfig, serve

    setup_logging(args.log_level)
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise SystemExit(f"pgmq-jobs: environment variable {args.secret_env} is empty or unset")
    config = InvokerConfig(
        dsn=resolve_dsn(args),
        registry=load_app(args.app),
        secret=secret,
        concurrency=args.concurrency,
        max_seconds_cap=args.max_seconds_cap,
    )
    serve(config, args.host, args.port)
    return 0


def add_serve_parser(sub: SubParsers, dsn: argparse.ArgumentParser) -> None:
    p = verb(
        sub,
        "serve",
        "HTTP invoker: POST /invoke drains a batch",
        ["PGMQ_JOBS_INVOKER_SECRET=… pgmq-jobs serve --app myapp.jobs:app --port 8787"],
        parents=[dsn],
        description="Serve POST /invoke (bearer secret from --secret-env): each request runs "
        "the ready jobs of one queue for up to max_seconds and answers with a JSON summary, "
        "for a scheduler (pg_cron with pg_net, a cron job) that pokes it.",
    )
    p.add_argument("--app", required=True, help="module:registry holding the handlers")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument(
        "--secret-env", default="PGMQ_JOBS_INVOKER_SECRET", help="env var with the bearer secret"
    )
    p.add_argument("--concurrency", type=int, default=10, help="handler threads per request")
    p.add_argument(
        "--max-seconds-cap", type=seconds, default=300.0, help="largest max_seconds accepted"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from pgmq_jobs.cli.demo import run_demo

    return run_demo(args.dsn)


def add_demo_parser(sub: SubParsers) -> None:
    p = verb(
        sub,
        "demo",
        "the whole story on the embedded dev database",
        ["pgmq-jobs demo", "pgmq-jobs demo --dsn postgresql://postgres@localhost/scratch"],
        description="Create a queue, enqueue ordinary, flaky and poison jobs, run a worker, show "
        "retries and the dead letter, replay it and print the stats (on the dev cluster, which "
        "stays running: pgmq-jobs dev --stop stops it).",
    )
    p.add_argument("--dsn", default=None, help="default: start the dev cluster (pgmq-jobs dev)")
    p.set_defaults(func=cmd_demo)


def register(sub: SubParsers) -> None:
    """Add ``worker``, ``serve`` and ``demo`` to the ``pgmq-jobs`` parser."""
    dsn = argparse.ArgumentParser(add_help=False)
    dsn.add_argument(
        "--dsn", default=None, help="database URL (default: $PGMQ_JOBS_DSN or $DATABASE_URL)"
    )
    add_worker_parser(sub)
    add_serve_parser(sub, dsn)
    add_demo_parser(sub)
