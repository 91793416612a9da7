"""The dashboard moved to :mod:`pgmq_jobs.web.dashboard`; this name re-exports it."""

from __future__ import annotations

from pgmq_jobs.web.dashboard import DEFAULT_HOST, DEFAULT_PORT, DashboardServer, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "serve"]
