"""Partitioned queues through PGMQ's create_partitioned and pg_partman.

The whole lifecycle suite also runs on partitioned queues (fixture both_queue_kinds); these
tests cover what is particular to them."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.versions import PACKAGE_VERSION

Connection = psycopg.Connection[Any]


def partman_config(conn: Connection, table: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "select partition_interval, retention from partman.part_config where parent_table = %s",
        (table,),
    ).fetchone()


def test_partitioned_queue_keeps_waiting_jobs_out_of_retention(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(
        conn, queue_name, partitioned=True, partition_interval="1000", retention_interval="5000"
    )
    [row] = [q for q in jobs.queues(conn) if q["queue"] == queue_name]
    assert (row["partitioned"], row["partition_interval"], row["retention_interval"]) == (
        True,
        "1000",
        "5000",
    )
    kind = conn.execute(
        "select relkind from pg_class where oid = %s::regclass", (f"pgmq.q_{queue_name}",)
    ).fetchone()
    assert kind == ("p",)
    # Retention applies to the archive only, never to waiting jobs.
    q_config = partman_config(conn, f"pgmq.q_{queue_name}")
    a_config = partman_config(conn, f"pgmq.a_{queue_name}")
    assert q_config is not None and q_config[1] is None
    assert a_config is not None and a_config[1] == "5000"
    # claim walks a vt index on the partitioned table too.
    indexes = {
        r[0]
        for r in conn.execute(
            "select indexname from pg_indexes where schemaname = 'pgmq' and tablename = %s",
            (f"q_{queue_name}",),
        )
    }
    assert {f"q_{queue_name}_vt_idx", f"q_{queue_name}_delivered_vt"} <= indexes


def test_maintenance_job_is_registered_while_partitioned_queues_exist(
    conn: Connection, queue_name: str
) -> None:
    def partman_jobs() -> list[tuple[Any, ...]]:
        return conn.execute(
            "select schedule, command from cron.job where jobname = 'pgmq_jobs_partman'"
        ).fetchall()

    jobs.create_queue(conn, queue_name, partitioned=True)
    jobs.create_queue(conn, f"{queue_name}_b", partitioned=True)
    assert partman_jobs() == [("*/5 * * * *", "select pgmq_jobs._partman_maintenance()")]
    conn.execute(partman_jobs()[0][1])  # what pg_cron runs
    # An upgrade from a release whose job called partman directly (under the default
    # search_path) brings the job up to date.
    conn.execute(
        "update cron.job set command = 'call partman.run_maintenance_proc()'"
        " where jobname = 'pgmq_jobs_partman'"
    )
    conn.execute("delete from pgmq_jobs.schema_version where version = %s", (PACKAGE_VERSION,))
    conn.execute(
        "insert into pgmq_jobs.schema_version (version) values ('0.1.0') on conflict do nothing"
    )
    assert install(conn.info.dsn).action == "upgraded"
    assert partman_jobs() == [("*/5 * * * *", "select pgmq_jobs._partman_maintenance()")]
    jobs.drop_queue(conn, queue_name)
    assert len(partman_jobs()) == 1  # still needed by the other one
    jobs.drop_queue(conn, f"{queue_name}_b")


def test_jobs_beyond_premade_partitions_land_in_default_and_are_still_served(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, partitioned=True, partition_interval="10")
    ids = jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(80)])
    in_default = conn.execute(f"select count(*) from pgmq.q_{queue_name}_default").fetchone()
    assert in_default is not None and in_default[0] > 0
    # Maintenance has fallen behind: the alert says so, with the count.
    [alert] = default_partition_alerts(conn, queue_name)
    assert alert[0] == in_default[0] and "default partition" in alert[1]
    claimed = jobs.claim(conn, queue_name, 100)
    assert sorted(j.job_id for j in claimed) == ids
    assert jobs.complete(conn, queue_name, claimed) == 80
    assert default_partition_alerts(conn, queue_name) == []
    # Its archive keeps the 80 in its own default partition, which pg_partman's maintenance
    # of this shared database would report every five minutes from now on.
    jobs.drop_queue(conn, queue_name)


def default_partition_alerts(conn: Connection, queue: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select value, message from pgmq_jobs.alerts"
        " where alert = 'default_partition' and queue = %s",
        (queue,),
    ).fetchall()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"partition_interval": "1 day; drop table x"},
            "partition_interval and retention_interval",
        ),
        ({"partition_interval": "1000", "retention_interval": "7 days"}, "both be job counts"),
        ({"unlogged": True}, "both partitioned and unlogged"),
    ],
)
def test_bad_partition_settings_are_refused(
    conn: Connection, queue_name: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        jobs.create_queue(conn, queue_name, partitioned=True, **kwargs)
    assert queue_name not in {q["queue"] for q in jobs.queues(conn)}


def test_partitioned_queue_without_pg_partman_is_refused(fresh_db: Any) -> None:
    with psycopg.connect(fresh_db(), autocommit=True) as c:
        c.execute("drop extension pg_partman cascade")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="pg_partman"):
            jobs.create_queue(c, "pq", partitioned=True)
        assert jobs.create_queue(c, "plainq") is True


def test_maintenance_reports_a_failing_partition_set_and_goes_on(fresh_db: Any) -> None:
    with psycopg.connect(fresh_db(), autocommit=True) as c:
        # "broken": jobs beyond its premade partitions sit in its default partition, so
        # pg_partman cannot make the partitions that would cover them.
        jobs.create_queue(c, "broken", partitioned=True, partition_interval="10")
        jobs.enqueue_batch(c, "broken", [{"i": i} for i in range(80)])
        # "fine": near the end of its premade partitions, with nothing in its default one.
        jobs.create_queue(c, "fine", partitioned=True, partition_interval="10")
        jobs.enqueue_batch(c, "fine", [{"i": i} for i in range(35)])

        def partitions(queue: str) -> int:
            row = c.execute(
                "select count(*) from pg_inherits where inhparent = %s::regclass",
                (f"pgmq.q_{queue}",),
            ).fetchone()
            return int(row[0]) if row else 0

        before = partitions("fine")
        warnings: list[str] = []
        c.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        [(failed,)] = c.execute("select pgmq_jobs._partman_maintenance()").fetchall()
        assert failed >= 1
        assert any(w.startswith("pg_partman maintenance of pgmq.q_broken failed") for w in warnings)
        assert partitions("fine") > before
