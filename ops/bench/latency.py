"""End-to-end latency of one workflow of three no-op steps, in one process.

Usage: python ops/bench/latency.py [--runs 100] [--pg postgresql://postgres@127.0.0.1/postgres]
       [--steps activities|local|both]

Creates fresh databases (a SQLite file in a temp folder; a new PostgreSQL database that is
dropped afterwards), runs the workflow sequentially and prints p50/p90/p99 per backend. The
steps are normal activities (``ThreeSteps``: a workflow task and an activity task per step)
or local activities (``ThreeNoopLocalSteps`` of ``_cadenza_side.py``: one workflow task in
all); ``--steps both`` (the default) measures both on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from cadenza.engine import Engine, Settings
from cadenza.sdk import Client, Worker, activity, workflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cadenza_side import ThreeNoopLocalSteps, noop_step


@activity.defn
async def noop(i: int) -> int:
    return i


@workflow.defn
class ThreeSteps:
    @workflow.run
    async def run(self) -> int:
        total = 0
        for i in range(3):
            total += await workflow.execute_activity(noop, i, start_to_close_timeout=10)
        return total


WORKFLOWS = {"activities": ThreeSteps, "local": ThreeNoopLocalSteps}


async def measure(url: str, runs: int, kinds: list[str]) -> dict[str, list[float]]:
    """Per kind of steps: ``runs`` sequential end-to-end latencies in ms (after 5 warm-ups)."""
    engine = Engine(Settings(database_url=url, shard_count=16))
    await engine.start()
    client = Client(engine)
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        async with Worker(
            client,
            task_queue="bench",
            workflows=[ThreeSteps, ThreeNoopLocalSteps],
            activities=[noop, noop_step],
        ):
            for kind in kinds:
                wf = WORKFLOWS[kind]
                for i in range(runs + 5):
                    started = time.perf_counter()
                    await client.execute_workflow(wf.run, id=f"lat-{kind}-{i}", task_queue="bench")
                    if i >= 5:  # warm-up runs are not counted
                        samples[kind].append((time.perf_counter() - started) * 1000)
    finally:
        await engine.stop()
    return samples


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--steps",
        choices=["activities", "local", "both"],
        default="both",
        help="the three steps as normal activities, as local activities, or both (default)",
    )
    args = parser.parse_args()
    kinds = ["activities", "local"] if args.steps == "both" else [args.steps]
    rows: list[tuple[str, dict[str, list[float]]]] = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(
            ("SQLite (WAL)", await measure(f"sqlite:///{folder}/bench.db", args.runs, kinds))
        )
    name = f"cadenza_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = args.pg.rsplit("/", 1)[0] + "/" + name
        rows.append(("PostgreSQL", await measure(url, args.runs, kinds)))
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"one workflow of 3 no-op steps, end to end, {args.runs} sequential runs")
    print(f"{'backend':<14} {'steps':<18} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, by_kind in rows:
        for kind, samples in by_kind.items():
            steps = "3 activities" if kind == "activities" else "3 local activities"
            print(
                f"{label:<14} {steps:<18} {pct(samples, 50):>8.1f} {pct(samples, 90):>8.1f} "
                f"{pct(samples, 99):>8.1f} {statistics.mean(samples):>8.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
