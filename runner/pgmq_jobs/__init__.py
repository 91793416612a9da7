"""pgmq-jobs: a Postgres-native job system on top of PGMQ."""

from __future__ import annotations

__version__ = "0.1.0"
