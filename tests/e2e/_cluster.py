"""Helpers to run Cadenza servers and workers as processes on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

HERE = Path(__file__).parent
TOKEN = "cluster-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    logs: list[str] = field(default_factory=list)

    async def start(self) -> None:
        handle = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cadenza.frontend.cli",
            *self.args,
            env=self.env,
            stdout=handle,
            stderr=handle,
        )
        handle.close()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def stop(self, sig: int) -> None:
        self.signal(sig)
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def base_env(db_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(HERE.parent.parent),
        "CADENZA_WORKER_TOKEN": TOKEN,
        "CADENZA_SHARD_LEASE_SECONDS": "4",
        "CADENZA_SHARD_COUNT": "8",
        "CADENZA_LOG_LEVEL": "INFO",
        "CADENZA_DATABASE_URL": db_url,
    }


def server(name: str, db_url: str, port: int, tmp: Path) -> Proc:
    return Proc(name, ["server", "--port", str(port)], base_env(db_url), tmp / f"{name}.log")


def worker(name: str, db_url: str, port: int, tmp: Path) -> Proc:
    return Proc(
        name,
        [
            "worker",
            "--server",
            f"http://127.0.0.1:{port}",
            "--token",
            TOKEN,
            "--module",
            str(HERE / "cluster_flows.py"),
            "--task-queue",
            "cluster",
        ],
        base_env(db_url),
        tmp / f"{name}.log",
    )


def shard_owners(db_url: str) -> dict[int, str | None]:
    with psycopg.connect(db_url) as conn:
        try:
            rows = conn.execute("SELECT shard_id, owner, lease_until_ms FROM shards").fetchall()
        except psycopg.errors.UndefinedTable:  # the first server has not migrated yet
            return {}
    now = int(__import__("time").time() * 1000)
    return {r[0]: (r[1] if r[1] and r[2] >= now else None) for r in rows}


async def wait_until(predicate, timeout: float, message: str, interval: float = 0.25) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(interval)


def fencing_violations(db_url: str) -> list[str]:
    """Per execution, the fencing tokens of its events never go down, and within a shard
    each token belongs to one writer."""
    problems: list[str] = []
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT shard_id, run_id, event_id, writer, range_id FROM events "
            "ORDER BY shard_id, run_id, event_id"
        ).fetchall()
    writers: dict[tuple[int, int], str] = {}
    last: dict[str, int] = {}
    for shard_id, run_id, event_id, writer, range_id in rows:
        if range_id is None:
            continue
        owner = writers.setdefault((shard_id, range_id), writer)
        if owner != writer:
            problems.append(f"shard {shard_id} token {range_id} used by {owner} and {writer}")
        if range_id < last.get(run_id, 0):
            problems.append(f"run {run_id} event {event_id}: token {range_id} after {last[run_id]}")
        last[run_id] = max(last.get(run_id, 0), range_id)
    return problems


def count_events(db_url: str, event_type: str) -> int:
    """How many events of a kind the database holds (progress of a run)."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE event_type = %s", (event_type,)
        ).fetchone()
    return int(row[0]) if row else 0


def print_log_tails(procs: list[Proc], lines: int = 80) -> None:
    """Print the end of each process's log; pytest shows it only when the test fails."""
    for proc in procs:
        tail = proc.log_text().splitlines()[-lines:]
        print(f"----- {proc.name} (last {len(tail)} lines) -----")
        print("\n".join(tail))
