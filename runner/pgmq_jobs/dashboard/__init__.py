"""``pgmq-jobs dashboard``: a local web view of queues, dead letters, workers and schedules.

Server-side rendered HTML over the stdlib HTTP server; charts are inline SVG drawn by
:mod:`pgmq_jobs.dashboard.svg`; the stylesheet and the small auto-refresh script ship in
``static/`` with the package. Nothing is fetched from the internet.
"""

from __future__ import annotations

from pgmq_jobs.dashboard.server import DEFAULT_HOST, DEFAULT_PORT, DashboardServer, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "serve"]
