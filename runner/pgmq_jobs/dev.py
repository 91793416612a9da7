"""``pgmq-jobs dev``: a local cluster in ``.pgmq-jobs/dev`` with pgmq-jobs installed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgmq_jobs.cluster import DEFAULT_CRON_DATABASE, EmbeddedCluster
from pgmq_jobs.install import InstallReport, install

DEV_DATABASE = DEFAULT_CRON_DATABASE  # pg_cron lives in this database
DEFAULT_DEV_DIR = Path(".pgmq-jobs") / "dev"


@dataclass
class DevCluster:
    cluster: EmbeddedCluster
    dsn: str
    report: InstallReport


def dev_cluster(data_dir: Path | None = None, port: int | None = None) -> EmbeddedCluster:
    """The dev cluster object (not started); ``data_dir`` is the cluster's data directory."""
    return EmbeddedCluster(data_dir if data_dir is not None else DEFAULT_DEV_DIR, port=port)


def start_dev(data_dir: Path | None = None, port: int | None = None) -> DevCluster:
    """Start (or reuse) the dev cluster, create the database and install into it."""
    cluster = dev_cluster(data_dir, port).start()
    dsn = cluster.create_database(DEV_DATABASE)
    report = install(dsn)
    return DevCluster(cluster=cluster, dsn=dsn, report=report)


def stop_dev(data_dir: Path | None = None) -> bool:
    """Stop the dev cluster; False if it was not running."""
    cluster = dev_cluster(data_dir)
    if not cluster.is_running:
        return False
    cluster.stop()
    return True


def reset_dev(data_dir: Path | None = None) -> Path:
    """Stop the dev cluster and delete its data; returns the directory removed."""
    cluster = dev_cluster(data_dir)
    cluster.destroy()
    return cluster.data_dir
