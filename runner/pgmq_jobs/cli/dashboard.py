"""CLI verb ``dashboard``: serve the local web dashboard (``pgmq_jobs.web.dashboard``)."""

from __future__ import annotations

import argparse
import os
import sys

from pgmq_jobs.cli.jobs import SubParsers, _dsn_parent, resolve_dsn, stop_on_signals, verb

DASHBOARD_PORT = 8469
TOKEN_ENV = "PGMQ_JOBS_DASHBOARD_TOKEN"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pgmq_jobs.web.dashboard.app import DashboardServer, is_loopback
    from pgmq_jobs.web.serving import listen_error

    try:
        server = DashboardServer(
            resolve_dsn(args),
            args.host,
            args.port,
            allow_actions=args.allow_actions,
            token=os.environ.get(TOKEN_ENV) or None,
            refresh=args.refresh,
            allowed_hosts=args.allowed_host,
        )
    except ValueError as exc:
        print(f"pgmq-jobs dashboard: --allowed-host: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:  # a busy port, an address not on this machine
        print(listen_error("pgmq-jobs dashboard", args.host, args.port, exc), file=sys.stderr)
        return 1
    stop = stop_on_signals()
    server.start()
    print(f"pgmq-jobs dashboard: serving {server.url}", file=sys.stderr, flush=True)
    if not is_loopback(args.host):
        names = ", ".join(sorted(server.allowed_hosts()))
        print(
            f"pgmq-jobs dashboard: warning: bound to {args.host}, reachable beyond this machine;"
            f" requests are served only when their Host is one of {names}"
            " (add names with --allowed-host)",
            file=sys.stderr,
            flush=True,
        )
    if server.token is not None:
        print(
            "pgmq-jobs dashboard: actions enabled (replay, purge, cancel, run now); they need this"
            " token:\n"
            f"  {server.token}\n"
            f"  or open {server.url}#token={server.token} (the token stays in the browser tab)",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            "pgmq-jobs dashboard: read-only (start with --allow-actions to replay or purge dead"
            " letters, cancel or run jobs)",
            file=sys.stderr,
            flush=True,
        )
    while not stop.wait(1.0):
        pass
    server.stop()
    return 0


def register(sub: SubParsers) -> None:
    """Add ``dashboard`` to the ``pgmq-jobs`` parser."""
    p = verb(
        sub,
        "dashboard",
        "serve a local web dashboard (queues, charts, jobs, dead letters, workers, schedules)",
        [
            "pgmq-jobs dashboard                       # read-only, http://127.0.0.1:8469/",
            "pgmq-jobs dashboard --allow-actions --port 8080",
        ],
        parents=[_dsn_parent()],
    )
    p.add_argument("--port", type=int, default=DASHBOARD_PORT, help=f"default {DASHBOARD_PORT}")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers use to reach the dashboard (repeatable; a port is ignored); "
        "loopback names and the --host address are always served, requests naming any other "
        "host get 421 (this keeps DNS-rebinding pages out)",
    )
    p.add_argument(
        "--allow-actions",
        action="store_true",
        help="allow replaying and purging dead letters, cancelling jobs and running them now "
        "from the pages; actions need the token "
        f"printed at start-up (or ${TOKEN_ENV})",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="auto-refresh interval of the pages (default 5; 0 turns it off)",
    )
    p.set_defaults(func=cmd_dashboard)
