"""``pgmq-jobs dev``: a local cluster in ``.pgmq-jobs/dev`` with pgmq-jobs installed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgmq_jobs.ops.cluster import DEFAULT_CRON_DATABASE, EmbeddedCluster
from pgmq_jobs.ops.install import InstallReport, install

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


# ---------------------------------------------------------------- in a container


class DevContainerError(RuntimeError):
    """``pgmq-jobs dev --container`` cannot run here; the message says what is missing."""


def start_dev_container(ready_timeout: float = 60.0) -> tuple[str, InstallReport]:
    """Start (or reuse) the dev container ``pgmq-jobs-dev`` (PostgreSQL with pg_cron, see
    :mod:`pgmq_jobs.ops.container`), create the database and install into it; returns its DSN
    and the install report. The container keeps running: ``stop_dev_container`` removes it."""
    import time

    import psycopg

    from pgmq_jobs.ops import container
    from pgmq_jobs.ops.cluster import create_database

    if not container.docker_available():
        raise DevContainerError(
            "--container needs a Docker engine, and none answers here (a docker CLI alone is "
            "not enough); without --container the dev cluster runs from the local binaries"
        )
    if not container.testcontainers_installed():
        raise DevContainerError("--container needs testcontainers: pip install 'pgmq-jobs[dev]'")
    spec = container.ContainerSpec.from_env(DEV_DATABASE)
    admin = container.start_dev_container(spec)
    deadline = time.monotonic() + ready_timeout
    while True:  # a reused container that was stopped takes a moment to accept connections
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
                create_database(conn, DEV_DATABASE, None)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    dsn = spec.dsn(*_host_port(admin), DEV_DATABASE)
    return dsn, install(dsn)


def stop_dev_container() -> bool:
    """Stop and remove the dev container; False if there was none."""
    from pgmq_jobs.ops import container

    if not container.docker_available():
        return False
    return container.stop_dev_container()


def _host_port(dsn: str) -> tuple[str, int]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return str(params["host"]), int(params["port"])
