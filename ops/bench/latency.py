"""End-to-end latency of one workflow of three no-op activities, in one process.

Usage: python ops/bench/latency.py [--runs 100] [--pg postgresql://postgres@127.0.0.1/postgres]

Creates fresh databases (a SQLite file in a temp folder; a new PostgreSQL database that is
dropped afterwards), runs the workflow sequentially and prints p50/p90/p99 per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time

import psycopg

from cadenza.engine import Engine, Settings
from cadenza.sdk import Client, Worker, activity, workflow


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


async def measure(url: str, runs: int) -> list[float]:
    engine = Engine(Settings(database_url=url, shard_count=16))
    await engine.start()
    client = Client(engine)
    samples: list[float] = []
    try:
        async with Worker(client, task_queue="bench", workflows=[ThreeSteps], activities=[noop]):
            for i in range(runs + 5):
                started = time.perf_counter()
                await client.execute_workflow(ThreeSteps.run, id=f"lat-{i}", task_queue="bench")
                if i >= 5:  # warm-up runs are not counted
                    samples.append((time.perf_counter() - started) * 1000)
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
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(("SQLite (WAL)", await measure(f"sqlite:///{folder}/bench.db", args.runs)))
    name = f"cadenza_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        rows.append(
            ("PostgreSQL", await measure(args.pg.rsplit("/", 1)[0] + "/" + name, args.runs))
        )
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"one workflow of 3 no-op activities, end to end, {args.runs} sequential runs")
    print(f"{'backend':<14} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, samples in rows:
        print(
            f"{label:<14} {pct(samples, 50):>8.1f} {pct(samples, 90):>8.1f} "
            f"{pct(samples, 99):>8.1f} {statistics.mean(samples):>8.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
