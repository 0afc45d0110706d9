"""Benchmark: schedule firing at scale, on SQLite and on PostgreSQL.

Run from the repository root::

    python ops/bench/schedules.py [--duration 60] [--db sqlite,postgresql]
                                  [--minute 10000] [--second 1000] [--burst] [--idle 20000]
                                  [--fire-ahead 1.0] [--worker]

For each database it creates ``--minute`` schedules firing every minute and ``--second``
schedules firing every second (overlap ``allow_all``, so every fire starts a workflow; no
worker runs them), lets one engine fire them for ``--duration`` seconds on the real clock, and
prints one table row per database:

* fire lateness = when the started run became available to workers minus the fire's intended
  time (nominal plus jitter, which is 0 here): p50, p99, max. "Available" is the later of the
  commit of the transaction that wrote the run (the wall clock when the store's write
  returned, recorded by this script) and the visibility time of its first workflow task (a
  fire written ahead of its time, ``--fire-ahead``, is held until then). A fire written
  ahead counts as on time only if its transaction had committed by its time;
* fires expected (every nominal time due at least 2 s before the end), lost (expected, never
  started: the engine keeps running after the measured time until what was due is started),
  behind (fire timers still due at the end: the backlog), doubled (a derived workflow id
  started more than once; 0 expected);
* CPU seconds of the process during the firing and the share of one core; peak RSS.

The every-minute schedules are spread over the 60 seconds of the minute (schedule ``i`` fires
at second ``i % 60``), about 167 per second, as a real fleet is; ``--burst`` makes them all fire
at second 0 instead (10,000 starts due at the same instant: the lateness then measures how fast
the backlog drains).

``--worker`` runs a worker in the same process (a workflow that returns at once) and measures
*dispatch* lateness instead: the time a worker started the run's first workflow task (its
``workflow_task_started`` event) minus the fire's intended time — what a job's code sees. One
process dispatches a few hundred workflows per second, so use it with fewer schedules
(``--minute 0 --second 50``).

A last check shows that memory does not grow with idle schedules: the process's resident
memory before and after ``--idle`` schedules that fire once a year are created and fired past
(the engine keeps nothing per schedule in memory: a schedule is rows, and compiled specs sit in
a bounded cache).

PostgreSQL: a fresh database is created on ``--pg-admin`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import resource
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cadenza.engine import Engine, Settings
from cadenza.engine._schedule_api import ScheduleAction
from cadenza.engine._schedule_logic import EvaluatorCache, ScheduleChange
from cadenza.timers._schedule_eval import format_nominal
from cadenza.timers._spec import decode_schedule_spec

NS = "default"
ACTION = ScheduleAction(workflow_type="BenchRun", task_queue="bench")


@dataclass
class Row:
    database: str
    schedules: int
    fires: int
    expected: int
    lost: int
    behind: int
    doubled: int
    p50: float
    p99: float
    worst: float
    cpu: float
    duration: float
    rss_mb: float


def _rss_mb() -> float:
    """Current resident memory of this process (MB)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _bulk_create(engine: Engine, specs: list[tuple[str, dict]]) -> None:
    """Create many schedules fast: the changes of 500 schedules per transaction (the same
    changes ``create_schedule`` makes one at a time)."""
    cache = EvaluatorCache()
    decoded: dict[str, object] = {}
    owned = set(engine.shards.owned()) if engine.shards else set()
    lead_ms = int(engine.settings.schedule_fire_ahead * 1000)
    for start in range(0, len(specs), 500):
        changes = []
        for schedule_id, raw in specs[start : start + 500]:
            change = ScheduleChange(
                shard_id=engine.schedule_shard(NS, schedule_id),
                namespace=NS,
                schedule_id=schedule_id,
                record=None,
                now_ms=engine.clock.now_ms(),
                cache=cache,
                shard_of=lambda wid: engine.shard_of(NS, wid),
                owned=owned.__contains__,
                lead_ms=lead_ms,
            )
            key = repr(sorted(raw.items()))
            spec = decoded.get(key)
            if spec is None:
                spec = decoded[key] = decode_schedule_spec(raw)
            change.create(spec, ACTION, "bench")  # type: ignore[arg-type]
            changes.append(change)
        await engine._commit_schedule_changes(changes)


async def _behind(engine: Engine, cutoff: int) -> int:
    """Fire timers due at or before ``cutoff`` and not fired yet."""
    from sqlalchemy import text

    async with engine.store._read() as conn:  # type: ignore[attr-defined]
        result = await conn.execute(
            text("SELECT count(*) FROM timers WHERE kind = 'schedule_fire' AND fire_at_ms <= :c"),
            {"c": cutoff},
        )
        return int(result.scalar() or 0)


async def _fires(engine: Engine) -> list[tuple[str, int]]:
    """(workflow id, visibility time of its first workflow task) of every execution (0 when
    that task is gone: a worker ran it, with ``--worker``)."""
    from sqlalchemy import text

    # Two plain reads joined here: tasks has no index on run_id, and SQLite would join them
    # by a nested loop.
    async with engine.store._read() as conn:  # type: ignore[attr-defined]
        tasks = await conn.execute(
            text("SELECT run_id, visible_at_ms FROM tasks WHERE kind = 'workflow'")
        )
        visible = {r[0]: int(r[1]) for r in tasks}
        runs = await conn.execute(text("SELECT workflow_id, run_id FROM executions"))
        return [(r[0], visible.get(r[1], 0)) for r in runs]


async def _dispatches(engine: Engine) -> list[tuple[str, int]]:
    """(workflow id, time its first workflow task started) of every execution a worker ran."""
    from sqlalchemy import text

    async with engine.store._read() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(
            text(
                "SELECT x.workflow_id, min(e.event_time_ms) FROM executions x "
                "JOIN events e ON e.shard_id = x.shard_id AND e.run_id = x.run_id "
                "AND e.event_type = 'workflow_task_started' GROUP BY x.workflow_id"
            )
        )
        return [(r[0], int(r[1])) for r in rows]


def _record_commits(engine: Engine, commits: dict[str, int]) -> None:
    """Record, per started workflow id, the wall-clock time its write transaction returned."""
    store = engine.schedule_store
    write = store.write

    async def timed(writes, runs=(), fences=None, notices=()):  # type: ignore[no-untyped-def]
        await write(writes, runs, fences, notices)
        done = int(time.time() * 1000)
        for run in runs:
            commits.setdefault(run.workflow_id, done)

    store.write = timed  # type: ignore[method-assign]


def _nominal_ms(workflow_id: str) -> int:
    text = workflow_id.rsplit("/", 1)[1].replace("Z", "+00:00")
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_one(label: str, url: str, args: argparse.Namespace) -> Row:
    settings = Settings(
        database_url=url,
        shard_count=16,
        strict_types=False,
        schedule_fire_ahead=args.fire_ahead,
    )
    engine = Engine(settings)
    await engine.start()
    commits: dict[str, int] = {}
    _record_commits(engine, commits)
    worker = None
    if args.worker:
        from cadenza.sdk import Client, Worker, workflow

        @workflow.defn(name="BenchRun")
        class BenchRun:
            @workflow.run
            async def run(self) -> None:
                return None

        worker = Worker(Client(engine), task_queue="bench", workflows=[BenchRun])
        await worker.__aenter__()
    try:
        specs = []
        for i in range(args.minute):
            second = 0 if args.burst else i % 60
            specs.append(
                (
                    f"minute-{i}",
                    {"kind": "cron", "cron": f"{second} * * * * ?", "overlap": "allow_all"},
                )
            )
        for i in range(args.second):
            specs.append(
                (f"second-{i}", {"kind": "cron", "cron": "* * * * * ?", "overlap": "allow_all"})
            )
        t0 = time.perf_counter()
        # Pause the timer loop's work while creating: create, then the first fires come due.
        await _bulk_create(engine, specs)
        created_at = engine.clock.now_ms()
        print(
            f"  {label}: {len(specs)} schedules created in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        cpu0 = _cpu()
        wall0 = time.perf_counter()
        await asyncio.sleep(args.duration)
        end_ms = engine.clock.now_ms()
        cpu = _cpu() - cpu0
        wall = time.perf_counter() - wall0
        behind = await _behind(engine, end_ms - 2000)
        # Drain: let the engine start what was still due at the end (it keeps firing new
        # fires too), so that "lost" counts fires that never start, not fires still queued.
        for _ in range(120):
            owned = engine.shards.owned() if engine.shards else []
            nxt = await engine.store.next_timer_ms(owned)
            if nxt is None or nxt > end_ms:
                break
            await asyncio.sleep(0.5)
        if worker is not None:
            # Let the worker take what is visible before it stops.
            for _ in range(60):
                if await engine.is_idle():
                    break
                await asyncio.sleep(0.5)
    finally:
        if worker is not None:
            await worker.__aexit__(None, None, None)
        await engine.stop()
    engine = Engine(settings)
    await engine.start(take_shards=False)
    try:
        fires = await _fires(engine)
        dispatched = await _dispatches(engine) if args.worker else []
    finally:
        await engine.stop()
    counts = Counter(wid for wid, _ in fires)
    doubled = sum(1 for c in counts.values() if c > 1)
    # Fires that came due while the schedules were still being created are not measured.
    lateness = [
        (max(visible, commits.get(wid, visible)) - _nominal_ms(wid)) / 1000
        for wid, visible in fires
        if created_at < _nominal_ms(wid) <= end_ms
    ]
    if args.worker:
        lateness = [
            (started - _nominal_ms(wid)) / 1000
            for wid, started in dispatched
            if created_at < _nominal_ms(wid) <= end_ms
        ]
    ahead = sum(
        1
        for wid, _ in fires
        if created_at < _nominal_ms(wid) <= end_ms
        and wid in commits
        and commits[wid] <= _nominal_ms(wid)
    )
    print(
        f"  {label}: {ahead} of {len(lateness)} measured fires committed by their time",
        file=sys.stderr,
    )
    cutoff = end_ms - 2000
    started = set(counts)
    expected = lost = 0
    for second in range(created_at // 1000 + 1, cutoff // 1000 + 1):
        nominal = format_nominal(second * 1000)
        for schedule_id, raw in specs:
            every_second = schedule_id.startswith("second-")
            if every_second or int(raw["cron"].split()[0]) == second % 60:
                expected += 1
                lost += f"{schedule_id}/{nominal}" not in started
    return Row(
        database=label,
        schedules=len(specs),
        fires=len(fires),
        expected=expected,
        lost=lost,
        behind=behind,
        doubled=doubled,
        p50=_percentile(lateness, 0.50),
        p99=_percentile(lateness, 0.99),
        worst=max(lateness) if lateness else float("nan"),
        cpu=cpu,
        duration=wall,
        rss_mb=_peak_rss_mb(),
    )


async def create_idle(url: str, count: int) -> None:
    """``count`` schedules that fire once a year (at 03:00 on 1 January)."""
    settings = Settings(database_url=url, shard_count=16, strict_types=False)
    engine = Engine(settings)
    await engine.start()
    try:
        specs = [
            (f"idle-{i}", {"kind": "cron", "cron": f"{i % 60} {i // 60 % 60} 3 1 1 ?"})
            for i in range(count)
        ]
        await _bulk_create(engine, specs)
    finally:
        await engine.stop()


async def probe(url: str) -> None:
    """(In a child process.) Start an engine on ``url``, let it run 5 s, print its RSS."""
    settings = Settings(database_url=url, shard_count=16, strict_types=False)
    engine = Engine(settings)
    await engine.start()
    try:
        await asyncio.sleep(5)
        gc.collect()
        print(f"{_rss_mb():.1f}")
    finally:
        await engine.stop()


def _probe(url: str) -> float:
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--probe", url], capture_output=True, text=True, timeout=120
    )
    return float(out.stdout.strip().splitlines()[-1])


async def idle_memory(empty_url: str, idle_url: str, count: int) -> tuple[float, float]:
    """Resident memory of an engine process on an empty database and on one with ``count``
    idle schedules (each measured in a fresh process)."""
    await create_idle(empty_url, 0)
    await create_idle(idle_url, count)
    return _probe(empty_url), _probe(idle_url)


def _pg_database(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"bench_schedules_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin.rsplit("/", 1)[0] + "/" + name


def _drop_pg(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of firing (60)")
    parser.add_argument("--db", default="sqlite,postgresql", help="databases to run on")
    parser.add_argument("--minute", type=int, default=10_000, help="every-minute schedules")
    parser.add_argument("--second", type=int, default=1_000, help="every-second schedules")
    parser.add_argument("--burst", action="store_true", help="every-minute ones all at :00")
    parser.add_argument("--idle", type=int, default=20_000, help="idle schedules (memory)")
    parser.add_argument(
        "--fire-ahead",
        type=float,
        default=Settings().schedule_fire_ahead,
        help="the engine's schedule_fire_ahead, seconds (default: the engine's default)",
    )
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("CADENZA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--worker", action="store_true", help="run a worker; measure dispatch lateness"
    )
    parser.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.probe:
        await probe(args.probe)
        return
    rows: list[Row] = []
    memory: list[tuple[str, float, float]] = []
    for label in args.db.split(","):
        with tempfile.TemporaryDirectory() as folder:
            names: list[str] = []
            if label == "sqlite":
                url, empty_url, idle_url = (
                    f"sqlite:///{folder}/{n}.db" for n in ("bench", "empty", "idle")
                )
            else:
                (n1, url), (n2, empty_url), (n3, idle_url) = (
                    _pg_database(args.pg_admin) for _ in range(3)
                )
                names = [n1, n2, n3]
            try:
                rows.append(await run_one(label, url, args))
                if args.idle:
                    memory.append((label, *await idle_memory(empty_url, idle_url, args.idle)))
            finally:
                for name in names:
                    _drop_pg(args.pg_admin, name)
    kind = "burst at :00" if args.burst else "spread over the minute"
    what = (
        "lateness = first workflow task started by the in-process worker - due time"
        if args.worker
        else "lateness = run available to workers (commit and release) - due time"
    )
    print(
        f"\n{args.minute} every-minute schedules ({kind}) + {args.second} every-second schedules, "
        f"{args.duration:g} s, one engine process, {os.cpu_count()} CPUs, "
        f"schedule_fire_ahead {args.fire_ahead:g} s; {what}\n"
    )
    print(
        "| database | fires | expected | lost | behind at the end | doubled | lateness p50 | p99 | "
        "max | CPU s (share of a core) | peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r.database} | {r.fires} | {r.expected} | {r.lost} | {r.behind} | {r.doubled} | "
            f"{r.p50 * 1000:.0f} ms | {r.p99 * 1000:.0f} ms | {r.worst * 1000:.0f} ms | "
            f"{r.cpu:.1f} ({r.cpu / r.duration:.0%}) | {r.rss_mb:.0f} MB |"
        )
    if memory:
        print("\nresident memory of an engine process after 5 s (fresh process each):\n")
        print(f"| database | no schedule | {args.idle} idle schedules (yearly) |")
        print("| --- | ---: | ---: |")
        for label, empty, idle in memory:
            print(f"| {label} | {empty:.0f} MB | {idle:.0f} MB |")


if __name__ == "__main__":
    started = datetime.now(UTC)
    asyncio.run(main())
    print(f"\n(run at {started:%Y-%m-%d %H:%M} UTC)", file=sys.stderr)
