"""The DBOS Transact side of ``vs_dbos.py``; runs in DBOS's own virtualenv, never in Cadenza's.

Usage (``vs_dbos.py`` calls it; by hand only to debug)::

    /tmp/dbos-venv/bin/python ops/bench/_dbos_side.py --db postgresql://postgres@127.0.0.1:5432/x \
        --latency-runs 200 --workflows 5000

The workload is DBOS's "three no-op steps": a ``@DBOS.workflow()`` that calls three
``@DBOS.step()`` functions one after the other. DBOS is configured the normal way (a
``DBOSConfig`` with ``system_database_url``, everything else default). Measured:

* latency: ``DBOS.start_workflow(wf).get_result()`` (start in the background, wait for the
  result: what Cadenza's ``execute_workflow`` does) and a direct call ``wf()`` (the workflow runs
  in the caller's thread), each over ``--latency-runs`` sequential runs after 5 warm-up runs;
* throughput: ``--workflows`` workflows started with ``DBOS.start_workflow`` from one thread as
  fast as it returns, then every handle's ``get_result()``; wall time from the first start to
  the last result (capped by ``--max-seconds``: then the completed count is read from DBOS's
  ``workflow_status`` table);
* CPU seconds of this process and its peak RSS (``ru_maxrss``).

``--phase`` runs only the latency or only the throughput part (``vs_dbos.py`` runs them as two
processes so that the database CPU it samples belongs to one phase).

Prints one JSON object on stdout; DBOS's own logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig


@DBOS.step()
def noop_step(i: int) -> int:
    return i


@DBOS.workflow()
def three_noop_steps() -> int:
    total = 0
    for i in range(3):
        total += noop_step(i)
    return total


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _pct(samples, 50),
        "p90_ms": _pct(samples, 90),
        "p99_ms": _pct(samples, 99),
        "mean_ms": statistics.mean(samples),
        "runs": len(samples),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_latency(runs: int) -> dict[str, Any]:
    started: list[float] = []
    direct: list[float] = []
    for i in range(runs + 5):
        t0 = time.perf_counter()
        if DBOS.start_workflow(three_noop_steps).get_result() != 3:
            raise RuntimeError("wrong result")
        if i >= 5:
            started.append((time.perf_counter() - t0) * 1000)
    for i in range(runs + 5):
        t0 = time.perf_counter()
        if three_noop_steps() != 3:
            raise RuntimeError("wrong result")
        if i >= 5:
            direct.append((time.perf_counter() - t0) * 1000)
    return {"start_and_wait": _summary(started), "direct_call": _summary(direct)}


def _completed_since(url: str, since_ms: int) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            schema = "dbos." if url.startswith("postgresql") else ""
            row = conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {schema}workflow_status "
                    "WHERE status = 'SUCCESS' AND created_at >= :since"
                ),
                {"since": since_ms},
            ).one()
            return int(row[0])
    finally:
        engine.dispose()


def measure_throughput(count: int, max_seconds: float, url: str) -> dict[str, Any]:
    cpu0 = _cpu()
    since_ms = int(time.time() * 1000) - 1
    t0 = time.perf_counter()
    handles = []
    for _ in range(count):
        handles.append(DBOS.start_workflow(three_noop_steps))
        if time.perf_counter() - t0 > max_seconds:
            break
    start_s = time.perf_counter() - t0
    done = 0
    capped = False
    for handle in handles:
        left = max_seconds - (time.perf_counter() - t0)
        if left <= 0:
            capped = True
            break
        # get_result has no timeout; poll the status instead once the deadline is near
        if left < 5:
            while handle.get_status().status not in ("SUCCESS", "ERROR"):
                if time.perf_counter() - t0 > max_seconds:
                    break
                time.sleep(0.05)
            else:
                done += 1
                continue
            capped = True
            break
        if handle.get_result() != 3:
            raise RuntimeError("wrong result")
        done += 1
    wall = time.perf_counter() - t0
    if capped:
        done = _completed_since(url, since_ms)
    cpu = _cpu() - cpu0
    return {
        "requested": count,
        "started": len(handles),
        "completed": done,
        "capped": capped or len(handles) < count,
        "start_seconds": start_s,
        "wall_seconds": wall,
        "workflows_per_s": done / wall,
        "steps_per_s": 3 * done / wall,
        "cpu_ms_per_workflow": 1000 * cpu / max(1, done),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="system database URL (postgresql or sqlite)")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--workflows", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=150.0)
    parser.add_argument("--phase", choices=("latency", "throughput", "both"), default="both")
    args = parser.parse_args()
    config: DBOSConfig = {
        "name": "vs-cadenza",
        "system_database_url": args.db,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        import dbos as dbos_package

        version = getattr(dbos_package, "__version__", None)
        if version is None:
            from importlib.metadata import version as dist_version

            version = dist_version("dbos")
        result: dict[str, Any] = {"dbos_version": version, "python": sys.version.split()[0]}
        if args.phase in ("latency", "both"):
            result["latency"] = measure_latency(args.latency_runs)
        if args.phase in ("throughput", "both"):
            result["throughput"] = measure_throughput(args.workflows, args.max_seconds, args.db)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        DBOS.destroy()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
