"""The testcontainers path (:mod:`pgmq_jobs.ops.container`): its configuration checked without
starting anything (no Docker engine is needed), the choice between local binaries and a
container, and the one line the test summary prints about it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgmq_jobs.ops import container
from pgmq_jobs.ops.container import BUILT_IMAGE, IMAGE_ENV, ContainerSpec


class FakeDockerClient:
    """Stands in for testcontainers' DockerClient, which talks to the engine when made."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def test_the_container_preloads_pg_cron_and_names_its_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    spec = ContainerSpec.from_env(
        "pgmq_jobs_test", settings={"fsync": False, "max_connections": 200}
    )
    assert spec.builds_image and spec.image_name == BUILT_IMAGE
    assert spec.command() == [
        "postgres",
        "-c", "shared_preload_libraries=pg_cron",
        "-c", "cron.database_name=pgmq_jobs_test",
        "-c", "fsync=off",
        "-c", "max_connections=200",
    ]  # fmt: skip
    dockerfile = spec.dockerfile()
    assert dockerfile.startswith("FROM postgres:17-bookworm\n")
    assert "postgresql-17-cron" in dockerfile and "postgresql-17-partman" in dockerfile
    assert spec.env() == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "postgres",
        "POSTGRES_DB": "postgres",
    }


def test_a_ready_image_from_the_environment_is_used_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(IMAGE_ENV, "registry.example/pg17-pgmq-cron:1")
    spec = ContainerSpec.from_env("pgmq_jobs")
    assert not spec.builds_image and spec.image_name == "registry.example/pg17-pgmq-cron:1"
    assert container.build_image(spec) == "registry.example/pg17-pgmq-cron:1"  # no build
    assert "cron.database_name=pgmq_jobs" in spec.command()


def test_the_testcontainers_object_is_configured_as_the_spec_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("testcontainers")
    import testcontainers.core.container as tc

    monkeypatch.setattr(tc, "DockerClient", FakeDockerClient)
    spec = ContainerSpec("pgmq_jobs_test", image="pg-with-cron:17", password="s3cr/t")
    made = container.make_container(spec, name="pgmq-jobs-dev")
    made._configure()  # what start() does first: the entrypoint's variables
    assert made.image.endswith("pg-with-cron:17")
    assert made._command == spec.command()
    assert "shared_preload_libraries=pg_cron" in made._command
    assert made._name == "pgmq-jobs-dev"
    assert {k: made.env[k] for k in spec.env()} == spec.env()
    assert 5432 in made.ports or "5432" in made.ports

    # The DSN: the mapped host and port, the spec's user, password and database.
    monkeypatch.setattr(made, "get_container_host_ip", lambda: "127.0.0.1")
    monkeypatch.setattr(made, "get_exposed_port", lambda port: 49153)
    dsn = container.container_dsn(spec, made, "pgmq_jobs_test")
    assert dsn == "postgresql://postgres:s3cr%2Ft@127.0.0.1:49153/pgmq_jobs_test"
    assert conninfo_to_dict(dsn) == {
        "host": "127.0.0.1",
        "port": "49153",
        "user": "postgres",
        "password": "s3cr/t",
        "dbname": "pgmq_jobs_test",
    }
    # testcontainers' own URL for the admin database agrees with ours (once "started").
    made._container = object()
    assert made.get_connection_url(driver=None) == container.container_dsn(spec, made)


def test_local_binaries_win_and_a_container_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = Path("/usr/lib/postgresql/15/bin")
    monkeypatch.setattr(container, "local_bin_dir", lambda: bin_dir)
    monkeypatch.setattr(container, "docker_available", lambda: False)
    local = container.choose_server()
    assert (local.kind, local.bin_dir) == ("local", bin_dir)
    assert local.line == (
        f"PostgreSQL from the local binaries in {bin_dir} "
        "(testcontainers path skipped: no Docker engine)"
    )
    monkeypatch.setattr(container, "docker_available", lambda: True)
    assert container.choose_server().kind == "local"

    monkeypatch.setattr(container, "local_bin_dir", lambda: None)
    monkeypatch.setattr(container, "testcontainers_installed", lambda: True)
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    chosen = container.choose_server()
    assert chosen.kind == "container" and BUILT_IMAGE in chosen.line

    monkeypatch.setattr(container, "docker_available", lambda: False)
    neither = container.choose_server()
    assert neither.kind == "none" and "no Docker engine" in neither.line


def test_the_suite_says_in_one_line_which_server_it_used(
    cluster_dsn: str, server_line: str
) -> None:
    with psycopg.connect(cluster_dsn) as conn:
        row = conn.execute("show shared_preload_libraries").fetchone()
    assert row is not None and "pg_cron" in row[0]
    line = server_line
    if os.environ.get("DATABASE_URL"):
        assert "DATABASE_URL" in line
    elif container.local_bin_dir() is not None and not container.docker_available():
        assert line.startswith("PostgreSQL from the local binaries in ")
        assert line.endswith("(testcontainers path skipped: no Docker engine)")


def test_dev_container_without_a_docker_engine_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgmq_jobs.ops import dev

    monkeypatch.setattr(container, "docker_available", lambda: False)
    with pytest.raises(dev.DevContainerError, match="needs a Docker engine"):
        dev.start_dev_container()
    assert dev.stop_dev_container() is False


def test_the_dev_verbs_container_flag_without_docker_is_one_line() -> None:
    if container.docker_available():
        pytest.skip("a Docker engine answers here: dev --container would start a container")
    cli = str(Path(sys.executable).with_name("pgmq-jobs"))
    proc = subprocess.run([cli, "dev", "--container"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("pgmq-jobs: error: --container needs a Docker engine")
