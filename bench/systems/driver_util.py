"""Standard-library helpers shared by the Python drivers (main venv and peers venv).

A driver is run as ``python -m bench.systems.<module> COMMAND --dsn ... [options]`` and
prints exactly one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

LAT_ENV = "BENCH_LAT_FILE"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("--dsn", required=True)
    p.add_argument("--queue", default="bench")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--producers", type=int, default=1)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=0, help="0: the system's default")
    p.add_argument("--kind", default="noop", choices=["noop", "fail_once", "lat"])
    p.add_argument("--gap-ms", type=float, default=10.0)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--out", default=None, help="file for per-job timestamps")
    return p


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def payload(kind: str, seq: int) -> dict[str, Any]:
    if kind == "fail_once":
        return {"n": seq, "fail_once": True}
    if kind == "lat":
        return {"n": seq, "lat": seq}
    return {"n": seq}


def record_start(data: dict[str, Any]) -> None:
    """Handler side of the pickup-latency scenario: note when a ``lat`` job started."""
    if "lat" not in data:
        return
    now = time.time()
    path = os.environ.get(LAT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{data['lat']} {now:.6f}\n")


def should_fail(data: dict[str, Any], attempt: int) -> bool:
    """``fail_once`` jobs fail their first attempt (attempt is 1-based)."""
    return bool(data.get("fail_once")) and attempt <= 1


def run_producers(n: int, producers: int, make: Callable[[int], Callable[[int], None]]) -> float:
    """Run ``producers`` threads each calling its enqueue function for its share of ``n``
    jobs; ``make(i)`` (not timed) returns thread i's function (connections opened there).
    Returns the wall seconds from the start of the first enqueue to the last commit."""
    share = [n // producers + (1 if i < n % producers else 0) for i in range(producers)]
    funcs = [make(i) for i in range(producers)]
    barrier = threading.Barrier(producers + 1)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        barrier.wait()
        try:
            base = sum(share[:i])
            for k in range(share[i]):
                funcs[i](base + k)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return seconds


def run_batches(args: Any, send: Callable[[int, int], Any]) -> list[float]:
    """``args.runs`` runs of ``args.n`` jobs in batches of ``args.batch`` through
    ``send(start, count)``; the seconds of each run."""
    runs = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        for start in range(0, args.n, args.batch):
            send(start, min(args.batch, args.n - start))
        runs.append(time.perf_counter() - t0)
    return runs


def latency_producer(n: int, gap_ms: float, out: str, send_one: Callable[[int], None]) -> None:
    """Enqueue ``n`` ``lat`` jobs one at a time, ``gap_ms`` apart, writing "seq commit_time"
    lines to ``out`` (time.time() right after the commit returned). Warm-up jobs get
    negative sequence numbers and are not recorded."""
    warmup = max(2, min(10, int(1000 / gap_ms)))  # about a second of warm-up jobs, 2 to 10
    for k in range(warmup):
        send_one(-(k + 1))
        time.sleep(gap_ms / 1000)
    time.sleep(0.3)
    with open(out, "w", encoding="utf-8") as fh:
        for seq in range(n):
            send_one(seq)
            fh.write(f"{seq} {time.time():.6f}\n")
            time.sleep(gap_ms / 1000)


def fail(msg: str) -> None:
    print(json.dumps({"error": msg}), flush=True)
    sys.exit(1)
