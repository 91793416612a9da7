"""Clear messages for database errors that have a known cause.

A write sent to a read replica (a hot standby) fails with SQLSTATE 25006
(``read_only_sql_transaction``) and PostgreSQL's own text, e.g. ``cannot execute INSERT in a
read-only transaction``, which does not say where the write should have gone. The CLI prints
:data:`REPLICA_MESSAGE` instead; Python callers can do the same::

    from pgmq_jobs.errors import primary_only

    with primary_only():
        jobs.enqueue(conn, "emails", {...})   # raises ReadOnlyReplicaError on a standby
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

READ_ONLY_SQLSTATE = "25006"
"""``read_only_sql_transaction``: what a hot standby answers to every write."""

REPLICA_MESSAGE = (
    "this server is a read-only replica (hot standby): writes such as enqueue and replay "
    "must go to the primary"
)


class ReadOnlyReplicaError(pg_errors.ReadOnlySqlTransaction):
    """A write reached a read-only server; its message says to use the primary.

    A subclass of psycopg's ``ReadOnlySqlTransaction`` (SQLSTATE 25006), so existing
    ``except psycopg.Error`` handlers still catch it; the original error is its ``__cause__``.
    """


def is_read_only(exc: BaseException) -> bool:
    """``exc`` is a database error with SQLSTATE 25006 (a write on a read-only server)."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate == READ_ONLY_SQLSTATE


def describe(exc: psycopg.Error) -> str:
    """One line for ``exc``: :data:`REPLICA_MESSAGE` for a write on a replica, else the
    server's primary message (or the first line of the error)."""
    if is_read_only(exc):
        return REPLICA_MESSAGE
    if exc.diag.message_primary:
        return exc.diag.message_primary
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def primary_only() -> Iterator[None]:
    """Turn SQLSTATE 25006 raised in the block into :class:`ReadOnlyReplicaError`.

    (25006 also answers writes in a transaction declared ``READ ONLY`` or under
    ``default_transaction_read_only``; the message fits those too: the write needs a
    read-write session on the primary.)
    """
    try:
        yield
    except psycopg.Error as exc:
        if is_read_only(exc) and not isinstance(exc, ReadOnlyReplicaError):
            raise ReadOnlyReplicaError(REPLICA_MESSAGE) from exc
        raise


class CliError(SystemExit):
    """An expected failure of a ``pgmq-jobs`` verb: ``pgmq-jobs main()`` prints its message as
    one ``pgmq-jobs: error: …`` line on stderr and exits with status 1 (uncaught elsewhere, it
    still exits 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def error_line(message: str) -> str:
    """``message`` as the CLI's one error line: the ``pgmq-jobs: error:`` prefix, and a newline
    (or carriage return) inside the message shown as ``\\n`` so it stays one line."""
    one_line = message.strip("\n").replace("\r", "\\r").replace("\n", "\\n")
    return f"pgmq-jobs: error: {one_line}"
