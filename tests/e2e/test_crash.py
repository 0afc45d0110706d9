"""Crash safety: SIGKILL the engine process at random moments while 200 workflows run.

After restarts every workflow completes with the right result, no activity has two completion
events, and every hash chain verifies.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sys
from pathlib import Path

import psycopg
import pytest

from cadenza.engine import Engine, Settings
from cadenza.sdk import Client
from tests.e2e.crash_flows import expected

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WORKFLOWS = 200
HERE = Path(__file__).parent


async def _spawn(db_url: str, log: Path) -> asyncio.subprocess.Process:
    """Start an engine process; its stderr goes to ``log`` (a pipe nobody reads could fill
    and block the process)."""
    env = {
        **os.environ,
        "CADENZA_SHARD_LEASE_SECONDS": "2",
        "CADENZA_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(HERE.parent.parent),
    }
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cadenza.frontend.cli",
            "worker",
            "--db",
            db_url,
            "--module",
            str(HERE / "crash_flows.py"),
            "--task-queue",
            "crash",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def _stop(process: asyncio.subprocess.Process, log: Path) -> None:
    """SIGTERM, and fail with the process's log if it does not drain within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"engine process ignored SIGTERM for 30 s: {_tail(log)}")


async def _closed_count(engine: Engine) -> int:
    rows = await engine.list_workflows(workflow_type="CrashFlow", limit=10_000)
    return sum(1 for r in rows if r.status != "running")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    backend, tmp_path, request
) -> None:
    if backend == "sqlite":
        db_url = f"sqlite:///{tmp_path}/crash.db"
    else:
        db_url = request.getfixturevalue("pg_database_factory")("crash")
    settings = Settings(database_url=db_url, shard_count=8)
    starter = Engine(settings)
    await starter.start()
    client = Client(starter)
    for n in range(WORKFLOWS):
        await client.start_workflow(
            "CrashFlow", n, id=f"crash-{n}", task_queue="crash", task_timeout=2
        )
    await starter.stop()

    rng = random.Random(20261121)
    reader = Engine(settings)
    await reader.start(take_shards=False)
    kills = 0
    try:
        for attempt in range(6):
            log = tmp_path / f"engine-{attempt}.log"
            process = await _spawn(db_url, log)
            await asyncio.sleep(rng.uniform(1.5, 3.5))
            if process.returncode is not None:
                pytest.fail(f"engine process exited early: {_tail(log)}")
            process.send_signal(signal.SIGKILL)
            await process.wait()
            kills += 1
            if await _closed_count(reader) == WORKFLOWS:
                break
        log = tmp_path / "engine-last.log"
        process = await _spawn(db_url, log)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while await _closed_count(reader) < WORKFLOWS:
                if loop.time() > deadline:
                    pytest.fail("workflows did not all complete after restart: " + _tail(log))
                await asyncio.sleep(0.5)
        finally:
            await _stop(process, log)

        assert kills >= 1
        for n in range(WORKFLOWS):
            _, events = await reader.get_history("default", f"crash-{n}", limit=10_000)
            closing = events[-1]
            assert closing.event_type == "workflow_execution_completed", (n, closing.event_type)
            assert int(bytes(closing.attributes.result)) == expected(n)
            completions = collections.Counter(
                e.attributes.scheduled_event_id
                for e in events
                if e.event_type == "activity_task_completed"
            )
            assert completions and max(completions.values()) == 1, n
            assert len(completions) == 3
            verdict = await reader.verify_history("default", f"crash-{n}")
            assert verdict.ok, (n, verdict.reason)
    finally:
        await reader.stop()
        if backend == "postgresql":
            with psycopg.connect(db_url, autocommit=True):
                pass
