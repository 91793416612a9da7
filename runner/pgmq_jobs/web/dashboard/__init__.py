"""``pgmq-jobs dashboard``: a local web view of queues, jobs, dead letters, workers and
schedules.

Server-side rendered HTML from Jinja2 templates (``templates/``, autoescaped) in a Starlette
app under uvicorn; charts are inline SVG drawn by :mod:`pgmq_jobs.web.dashboard.svg`; the
stylesheet and the small auto-refresh script ship in ``static/`` with the package. Nothing is
fetched from the internet.
"""

from __future__ import annotations

from pgmq_jobs.web.dashboard.app import DEFAULT_HOST, DEFAULT_PORT, DashboardServer, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "serve"]
