"""PostgreSQL with pg_cron (and pg_partman) in a Docker container, through testcontainers.

Where a Docker engine exists and no local PostgreSQL binaries do, the test suite
(``tests/conftest.py``) and ``pgmq-jobs dev --container`` use this instead of an
:class:`~pgmq_jobs.ops.cluster.EmbeddedCluster`.

The image: by default one built from the official ``postgres:17-bookworm`` image (whose apt
sources are PostgreSQL's own, apt.postgresql.org) with ``postgresql-17-cron`` and
``postgresql-17-partman`` added, tagged ``pgmq-jobs-postgres:17`` and kept, so it is built
once. PGMQ then comes from the ``pgmq`` PyPI package's SQL, as on any server without the
extension (``pgmq_jobs.ops.install``). ``$PGMQ_JOBS_CONTAINER_IMAGE`` names a ready image to use
as it is instead: it must be PostgreSQL 15+ from the official image's lineage (its entrypoint
reads ``POSTGRES_PASSWORD``) with pg_cron installed; the ``pgmq`` extension (used when present)
and pg_partman (partitioned queues) are optional.

The server always runs with ``shared_preload_libraries = 'pg_cron'`` and
``cron.database_name`` set on its command line (:meth:`ContainerSpec.command`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

IMAGE_ENV = "PGMQ_JOBS_CONTAINER_IMAGE"
BASE_IMAGE = "postgres:17-bookworm"
BUILT_IMAGE = "pgmq-jobs-postgres:17"
DEV_CONTAINER_NAME = "pgmq-jobs-dev"
PG_PORT = 5432

Setting = str | int | bool


def _setting_text(value: Setting) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True)
class ContainerSpec:
    """What the container runs: image, server command line, superuser and database.

    ``image``: a ready image (from ``$PGMQ_JOBS_CONTAINER_IMAGE``), or None to build
    :data:`BUILT_IMAGE` from :meth:`dockerfile`. ``settings`` are extra server settings,
    given as ``-c name=value`` after pg_cron's."""

    cron_database: str
    image: str | None = None
    settings: Mapping[str, Setting] = field(default_factory=dict)
    username: str = "postgres"
    password: str = "postgres"
    dbname: str = "postgres"
    base_image: str = BASE_IMAGE

    @classmethod
    def from_env(cls, cron_database: str, **kwargs: Any) -> ContainerSpec:
        """The spec with ``$PGMQ_JOBS_CONTAINER_IMAGE`` as its image when set."""
        return cls(cron_database, image=os.environ.get(IMAGE_ENV) or None, **kwargs)

    @property
    def image_name(self) -> str:
        """The image the container runs."""
        return self.image or BUILT_IMAGE

    @property
    def builds_image(self) -> bool:
        return self.image is None

    def dockerfile(self) -> str:
        """The Dockerfile of :data:`BUILT_IMAGE`: the official image plus pg_cron and
        pg_partman from PostgreSQL's apt repository, which that image already uses."""
        major = self.base_image.split(":", 1)[1].split("-", 1)[0] if ":" in self.base_image else ""
        major = major if major.isdigit() else "17"
        return (
            f"FROM {self.base_image}\n"
            "RUN apt-get update \\\n"
            " && apt-get install -y --no-install-recommends"
            f" postgresql-{major}-cron postgresql-{major}-partman \\\n"
            " && rm -rf /var/lib/apt/lists/*\n"
        )

    def command(self) -> list[str]:
        """The server's command line: pg_cron preloaded, its database, then ``settings``."""
        settings: dict[str, Setting] = {
            "shared_preload_libraries": "pg_cron",
            "cron.database_name": self.cron_database,
            **self.settings,
        }
        argv = ["postgres"]
        for name, value in settings.items():
            argv += ["-c", f"{name}={_setting_text(value)}"]
        return argv

    def env(self) -> dict[str, str]:
        """The official image's entrypoint variables."""
        return {
            "POSTGRES_USER": self.username,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": self.dbname,
        }

    def dsn(self, host: str, port: int, dbname: str | None = None) -> str:
        """A libpq DSN for the container's server as mapped to ``host:port``."""
        user, password = quote(self.username, safe=""), quote(self.password, safe="")
        return f"postgresql://{user}:{password}@{host}:{port}/{quote(dbname or self.dbname)}"


# ---------------------------------------------------------------- what is here


def docker_available() -> bool:
    """A Docker engine answers (not just a ``docker`` CLI on the PATH)."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no daemon, no socket, no permission: no engine to use
        return False


def testcontainers_installed() -> bool:
    try:
        import testcontainers.core.container  # noqa: F401
    except ImportError:
        return False
    return True


def local_bin_dir() -> Path | None:
    """The local PostgreSQL server binaries, or None."""
    from pgmq_jobs.ops.cluster import ClusterError, find_bin_dir

    try:
        return find_bin_dir()
    except ClusterError:
        return None


@dataclass(frozen=True)
class ServerChoice:
    """Where a throwaway server comes from: ``local`` binaries or a ``container``, and the
    one line that says so (and why the other path was not taken)."""

    kind: str
    line: str
    bin_dir: Path | None = None


def choose_server() -> ServerChoice:
    """Local binaries when there are any; else a container where Docker and testcontainers
    are; else ``none``, with a line saying what is missing."""
    bin_dir = local_bin_dir()
    if bin_dir is not None:
        why = (
            "no Docker engine"
            if not docker_available()
            else "local binaries are preferred; Docker is used only without them"
        )
        return ServerChoice(
            "local",
            f"PostgreSQL from the local binaries in {bin_dir} (testcontainers path skipped: {why})",
            bin_dir,
        )
    if not docker_available():
        return ServerChoice(
            "none",
            "no local PostgreSQL binaries and no Docker engine: run `make setup`, start "
            "Docker, or set DATABASE_URL",
        )
    if not testcontainers_installed():
        return ServerChoice(
            "none",
            "no local PostgreSQL binaries, and testcontainers is not installed for the Docker "
            "engine here: pip install 'pgmq-jobs[dev]'",
        )
    image = os.environ.get(IMAGE_ENV) or f"{BUILT_IMAGE} (built from {BASE_IMAGE})"
    return ServerChoice("container", f"PostgreSQL in a Docker container (testcontainers), {image}")


# ---------------------------------------------------------------- running one


def build_image(spec: ContainerSpec) -> str:
    """Build :data:`BUILT_IMAGE` (layers cached by Docker: fast after the first time) unless
    the spec names a ready image; returns the image to run."""
    if not spec.builds_image:
        return spec.image_name
    from testcontainers.core.image import DockerImage

    with tempfile.TemporaryDirectory(prefix="pgmq-jobs-image-") as context:
        (Path(context) / "Dockerfile").write_text(spec.dockerfile(), encoding="utf-8")
        DockerImage(path=context, tag=BUILT_IMAGE, clean_up=False).build()
    return BUILT_IMAGE


def make_container(spec: ContainerSpec, *, name: str | None = None) -> Any:
    """The testcontainers ``PostgresContainer`` for ``spec``, configured, not started
    (constructing it needs a Docker engine to talk to)."""
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the community/ layout
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        spec.image_name,
        port=PG_PORT,
        username=spec.username,
        password=spec.password,
        dbname=spec.dbname,
        driver=None,
    )
    container.with_command(spec.command())
    if name is not None:
        container.with_name(name)
    return container


def container_dsn(spec: ContainerSpec, container: Any, dbname: str | None = None) -> str:
    """The DSN of a started container's server (its mapped host and port)."""
    host = container.get_container_host_ip()
    port = int(container.get_exposed_port(PG_PORT))
    return spec.dsn(host, port, dbname)


@contextmanager
def running_container(spec: ContainerSpec) -> Iterator[str]:
    """Build the image if needed, start the container, yield the admin database's DSN, stop
    and remove it afterwards."""
    build_image(spec)
    with make_container(spec) as container:
        yield container_dsn(spec, container)


def start_dev_container(spec: ContainerSpec) -> str:
    """Start (or reuse) the long-lived dev container ``pgmq-jobs-dev``; returns its admin
    DSN. It is not reaped when this process exits: ``stop_dev_container`` removes it."""
    import docker

    client = docker.from_env()
    try:
        existing = client.containers.get(DEV_CONTAINER_NAME)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        if existing.status != "running":
            existing.start()
            existing.reload()
        port = existing.ports[f"{PG_PORT}/tcp"][0]["HostPort"]
        return spec.dsn("127.0.0.1", int(port))
    from testcontainers.core.config import testcontainers_config

    testcontainers_config.ryuk_disabled = True  # the dev cluster outlives this command
    build_image(spec)
    container = make_container(spec, name=DEV_CONTAINER_NAME)
    container.start()
    return container_dsn(spec, container)


def stop_dev_container() -> bool:
    """Stop and remove the dev container; False if there was none."""
    import docker

    client = docker.from_env()
    try:
        existing = client.containers.get(DEV_CONTAINER_NAME)
    except docker.errors.NotFound:
        return False
    existing.remove(force=True)
    return True
