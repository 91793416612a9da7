"""pgmq-jobs: background jobs in PostgreSQL, on PGMQ.

Every verb takes --dsn (default: $PGMQ_JOBS_DSN or $DATABASE_URL) and has its own --help with
examples. Durations are what PostgreSQL's interval accepts, checked by the database: 90
(seconds), '90 s', 1h30m, '10 minutes', PT10M. Errors are one line on stderr starting with
"pgmq-jobs: error:", exit status 1 (`alerts` exits 2 while an alert fires).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pgmq_jobs import __version__
from pgmq_jobs.cli import dashboard as cli_dashboard
from pgmq_jobs.cli import jobs as cli_jobs
from pgmq_jobs.cli import observe as cli_observe
from pgmq_jobs.cli import worker as cli_worker


def cmd_dev(args: argparse.Namespace) -> int:
    from pgmq_jobs.ops.dev import reset_dev, start_dev, stop_dev

    if args.container:
        return _dev_container(args)
    if args.reset:
        print(f"dev cluster removed ({reset_dev(args.data_dir)})", file=sys.stderr)
        if args.stop:
            return 0
    if args.stop:
        stopped = stop_dev(args.data_dir)
        print("dev cluster stopped" if stopped else "dev cluster was not running")
        return 0
    dev = start_dev(args.data_dir, args.port)
    print(dev.report.summary(), file=sys.stderr)
    print(
        f"dev cluster running (data: {dev.cluster.data_dir}); stop it with `pgmq-jobs dev --stop`",
        file=sys.stderr,
    )
    print(dev.dsn)
    return 0


def _dev_container(args: argparse.Namespace) -> int:
    """``dev --container``: the dev database in the Docker container ``pgmq-jobs-dev``."""
    from pgmq_jobs.errors import CliError
    from pgmq_jobs.ops.dev import DevContainerError, start_dev_container, stop_dev_container

    if args.reset or args.data_dir is not None or args.port is not None:
        raise CliError("--container takes no --reset, --data-dir or --port (--stop removes it)")
    if args.stop:
        stopped = stop_dev_container()
        print("dev container removed" if stopped else "dev container was not running")
        return 0
    try:
        dsn, report = start_dev_container()
    except DevContainerError as exc:
        raise CliError(str(exc)) from None
    print(report.summary(), file=sys.stderr)
    print(
        "dev container pgmq-jobs-dev running; remove it with `pgmq-jobs dev --container --stop`",
        file=sys.stderr,
    )
    print(dsn)
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from pgmq_jobs.ops.install import install, status

    dsn = cli_jobs.resolve_dsn(args)
    if args.check:
        found = status(dsn)
        print(found.summary())
        return 0 if found.up_to_date else 1
    report = install(dsn, with_plpython=args.with_plpython)
    print(report.summary())
    return 0


def add_dev_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = cli_jobs.verb(
        sub,
        "dev",
        "start (or reuse) a local cluster with pgmq-jobs installed",
        ["export PGMQ_JOBS_DSN=$(pgmq-jobs dev)", "pgmq-jobs dev --stop"],
        description="Start (or reuse) a throwaway local PostgreSQL cluster from the system's "
        "binaries, with PGMQ, pg_cron and pgmq-jobs installed; prints its DSN on stdout.",
    )
    p.add_argument("--stop", action="store_true", help="stop the dev cluster")
    p.add_argument(
        "--reset", action="store_true", help="delete the dev cluster's data first (fresh start)"
    )
    p.add_argument("--data-dir", type=Path, default=None, help="default: .pgmq-jobs/dev")
    p.add_argument("--port", type=int, default=None, help="default: a free port")
    p.add_argument(
        "--container",
        action="store_true",
        help="run it in the Docker container pgmq-jobs-dev instead (testcontainers; PostgreSQL "
        "with pg_cron, image: $PGMQ_JOBS_CONTAINER_IMAGE or built from postgres:17-bookworm)",
    )
    p.set_defaults(func=cmd_dev)


def add_install_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "install",
        help="install PGMQ (if missing) and pgmq-jobs into a database, or upgrade it",
        description="Install pgmq-jobs into a database, or upgrade a database of an earlier "
        "release (every step of sql/upgrades/ in order, in one transaction). A database of "
        "this release is left unchanged; one of a newer release is refused.",
        epilog="example: pgmq-jobs install --dsn postgresql://postgres@localhost/app\n"
        "         pgmq-jobs install --check   # installed vs package release, changes nothing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dsn", default=None, help="database URL (default: $PGMQ_JOBS_DSN or $DATABASE_URL)"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="report the installed and the package's release and what an install would "
        "apply; change nothing (exit 0 when they are the same release, else 1)",
    )
    p.add_argument(
        "--with-plpython",
        action="store_true",
        help="also install the optional PL/Python functions (schema pgmq_jobs_plpy: payload "
        "JSON Schemas, cron checks and next runs, HTTP poke) where plpython3u is available",
    )
    p.set_defaults(func=cmd_install)


SUMMARY_EPILOG = """\
getting started:
  export PGMQ_JOBS_DSN=postgresql://postgres@localhost/app   # or: $(pgmq-jobs dev)
  pgmq-jobs install
  pgmq-jobs queues create emails --max-attempts 8 --retry-base 2s
  pgmq-jobs enqueue emails '{"to": "a@example.com"}' --delay 10m
  pgmq-jobs worker --app myapp.jobs:app
  pgmq-jobs stats --watch

verbs by task:
  set up       dev, install
  produce      enqueue, schedules
  run          worker, serve, sweep
  inspect      queues, jobs, dlq, audit
  monitor      stats, workers, alerts, exporter, dashboard
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli_jobs.Parser(
        prog="pgmq-jobs",
        description=__doc__,
        epilog=SUMMARY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pgmq-jobs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="verbs", metavar="VERB")
    add_dev_parser(sub)
    add_install_parser(sub)
    cli_jobs.register(sub)
    cli_observe.register(sub)
    cli_worker.register(sub)
    cli_dashboard.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; expected failures print one ``pgmq-jobs: error:`` line on stderr and
    exit 1."""
    import psycopg

    from pgmq_jobs.errors import CliError, describe
    from pgmq_jobs.ops.cluster import ClusterError
    from pgmq_jobs.ops.install import InstallError

    parser = build_parser()
    args = parser.parse_args(
        cli_jobs.join_negative_durations(sys.argv[1:] if argv is None else argv)
    )
    try:
        return int(args.func(args))
    except CliError as exc:
        _error(exc.message)
    except (ClusterError, InstallError) as exc:
        _error(str(exc))
    except psycopg.Error as exc:
        # describe(): a write on a read replica (SQLSTATE 25006) says to use the primary.
        _error(describe(exc))
    except OSError as exc:
        # A busy port, an unreadable file: the system's reason, not a traceback.
        _error(exc.strerror or str(exc) if not exc.filename else f"{exc.filename}: {exc.strerror}")
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        # A verb that exits with a message ("pgmq-jobs: ..."): the same one-line form.
        _error(exc.code.removeprefix("pgmq-jobs: ").removeprefix("error: "))
    return 1


def _error(message: str) -> None:
    """One line on stderr, whatever the message quotes (a queue name with a newline, say)."""
    from pgmq_jobs.errors import error_line

    print(error_line(message), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
