"""Metrics for monitoring systems: the Prometheus exporter (:mod:`pgmq_jobs.metrics.exporter`)."""
