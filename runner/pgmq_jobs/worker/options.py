"""How a worker runs (:class:`WorkerOptions`) and what a run did (:class:`Summary`)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, fields

INFINITY = float("inf")

AUTO_PREFETCH_SECONDS = 0.05
"""Automatic prefetch: hold at most this much work (at the measured handler pace) per slot."""
AUTO_PREFETCH_BYTES = 16 << 20
"""... and at most about this many bytes of payloads (at their measured average size)."""
AUTO_PREFETCH_MAX = 300
"""Automatic prefetch never exceeds this (or ``concurrency``, when that is larger)."""
WAITING_RECHECKS = (0.02, 0.1, 0.5)
"""Seconds after marking itself waiting at which a worker claims again (see the claimer)."""


@dataclass
class WorkerOptions:
    """How a worker runs; every field has a sensible default but ``queues``."""

    queues: list[str]
    concurrency: int = 10
    # Jobs claimed ahead of a free handler slot. They wait unstarted, their leases extended
    # like running jobs, so the next claim's round trip overlaps with work instead of leaving
    # the slots idle. None: automatic, as many as concurrency, more for fast handlers (see
    # Claimer.prefetch).
    prefetch: int | None = None
    poll_interval: float = 1.0
    listen: bool = True
    listen_dsn: str | None = None
    timeout: float | None = None  # default handler timeout (seconds) where a handler has none
    grace: float = 30.0
    heartbeat_interval: float = 5.0
    drain: bool = False
    max_seconds: float | None = None
    max_jobs: int | None = None
    prepared: bool = False  # server-side prepared statements (not behind transaction pooling)
    reconnect_cap: float = 5.0
    extend_fraction: float = 0.5
    worker_id: str | None = None

    def check(self) -> None:
        """Reject nonsense with a message naming the option."""
        if not self.queues:
            raise ValueError("give at least one queue")
        if self.concurrency < 1 or self.concurrency > 1000:
            raise ValueError(f"concurrency must be 1..1000, got {self.concurrency}")
        if self.prefetch is not None and not 0 <= self.prefetch <= 1000:
            raise ValueError(f"prefetch must be 0..1000, got {self.prefetch}")
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {self.poll_interval}")
        if not 0 < self.extend_fraction < 1:
            raise ValueError(f"extend_fraction must be in (0, 1), got {self.extend_fraction}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValueError(f"max_jobs must be positive, got {self.max_jobs}")


@dataclass
class Summary:
    """What a run did. ``failed`` counts failed attempts reported (retried or dead),
    ``dead`` those that went to the dead-letter queue, ``released`` prefetched jobs given
    back unstarted at a stop, ``snoozed`` deliveries a handler put off (``Snooze``) without
    using up an attempt, ``stale`` outcomes the database ignored because the delivery had
    been superseded (or was already reported)."""

    claimed: int = 0
    released: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    stale: int = 0
    snoozed: int = 0
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "seconds": round(self.seconds, 3)})

    def add(self, other: Summary) -> None:
        """Add ``other``'s counts to these (seconds: the longer of the two)."""
        for f in fields(self):
            if f.name == "seconds":
                self.seconds = max(self.seconds, other.seconds)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
