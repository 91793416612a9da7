"""The ``pgmq-jobs`` command line: one module per group of verbs (``jobs``, ``observe``,
``worker``, ``dashboard``, ``demo``), wired together in :mod:`pgmq_jobs.cli.main`."""

from __future__ import annotations

from pgmq_jobs.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
