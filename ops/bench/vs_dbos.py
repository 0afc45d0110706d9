"""Cadenza against DBOS Transact on DBOS's "three no-op steps" workflow; prints one table.

Usage::

    python ops/bench/vs_dbos.py [--quick] [--pg postgresql://postgres@127.0.0.1:5432]
                                [--skip-dbos] [--skip-scale] [--json results.json]
                                [--profile] [--py-spy PATH]

What runs (see ``ops/bench/README.md`` for what each number means):

* DBOS Transact in its own virtualenv (``--dbos-python``, created with ``pip install dbos`` when
  missing; never the project's environment), as a subprocess (``_dbos_side.py``) that prints
  JSON, on a fresh PostgreSQL database and on a SQLite file;
* Cadenza as separate processes: ``cadenza server --db URL --port P`` (with
  ``CADENZA_WORKER_TOKEN``) and ``cadenza worker --server http://127.0.0.1:P --token T --module
  ops/bench/_cadenza_side.py``, in 1 server + 1 worker and (PostgreSQL) 2 servers + 2 workers;
  this script is the client: it starts workflows through the HTTP API (``RemoteService``) with
  32 requests in flight, spread over the servers, and counts completions in the database;
* Cadenza embedded (engine, client and worker in this process) for the latency row only;
* the cost per workflow as the database grows: a fresh PostgreSQL database is filled with
  bulk-inserted copies of a real completed execution (its ``executions`` row and its events),
  then a 1 + 1 cluster runs a batch of workflows at 10k, 100k and 1M stored workflows.

Every database is created fresh on the PostgreSQL server and dropped at the end; SQLite files
live in a temporary folder. The machine's load average is printed with the numbers: other
programs running on the machine skew them.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CADENZA_SIDE = HERE / "_cadenza_side.py"
DBOS_SIDE = HERE / "_dbos_side.py"
DEFAULT_DBOS_VENV = Path(tempfile.gettempdir()) / "dbos-venv"
WORKFLOW_TYPE = "ThreeNoopSteps"
TASK_QUEUE = "default"
NAMESPACE = "default"
STARTERS = int(os.environ.get("BENCH_STARTERS", "32"))  # HTTP start requests in flight
# Extra ``cadenza worker`` options for experiments, e.g. "--max-workflow-tasks 200".
WORKER_ARGS = os.environ.get("BENCH_WORKER_ARGS", "").split()
TICK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """How much each measurement does (``--quick`` shrinks it)."""

    latency_runs: int = 200
    workflows: int = 5000
    max_seconds: float = 90.0
    # Each throughput row is the run with the median rate of this many (the machine's own
    # noise moves one run by 10-20 %; every run's rate is printed).
    throughput_runs: int = 3
    scale_points: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    scale_workflows: int = 500
    scale_max_seconds: float = 45.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            latency_runs=50,
            workflows=1000,
            max_seconds=60.0,
            throughput_runs=1,
            scale_points=(10_000, 100_000),
            scale_workflows=300,
            scale_max_seconds=30.0,
        )


# --------------------------------------------------------------------------- machine


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICK


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class PgCpu:
    """CPU seconds used by the PostgreSQL backends connected to one database.

    Backends are found by their process title (``postgres: … user dbname host …``) each time
    :meth:`sample` runs; a backend first seen mid-window is counted from zero.
    """

    def __init__(self, dbname: str | None) -> None:
        self._pattern = re.compile(rf" {re.escape(dbname)} ") if dbname else None
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def _backends(self) -> dict[int, float]:
        found: dict[int, float] = {}
        if self._pattern is None:
            return found
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                title = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
            text = title.replace(b"\0", b" ").decode(errors="replace")
            if text.startswith("postgres: ") and self._pattern.search(text):
                cpu = proc_cpu_seconds(int(entry.name))
                if cpu is not None:
                    found[int(entry.name)] = cpu
        return found

    def start(self) -> None:
        self._first = self._backends()
        self._last = dict(self._first)

    def sample(self) -> None:
        for pid, cpu in self._backends().items():
            self._first.setdefault(pid, 0.0)
            self._last[pid] = cpu

    def seconds(self) -> float:
        self.sample()
        return sum(self._last[pid] - self._first.get(pid, 0.0) for pid in self._last)


# --------------------------------------------------------------------------- databases


def pg_dsn(server: str, dbname: str) -> str:
    return f"{server.rstrip('/')}/{dbname}"


@contextlib.contextmanager
def fresh_pg_database(server: str, label: str) -> Iterator[str]:
    """Create a uniquely named database on the server; drop it afterwards."""
    name = f"bench_{label}_{secrets.token_hex(4)}"
    admin = pg_dsn(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_version(server: str) -> str:
    with psycopg.connect(pg_dsn(server, "postgres")) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


class Completions:
    """Counts the benchmark's executions by status, straight from the database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: psycopg.Connection[Any] | None = None
        self._sqlite: sqlite3.Connection | None = None
        if url.startswith("postgresql"):
            self._pg = psycopg.connect(url, autocommit=True)
        else:
            path = url[len("sqlite:///") :]
            self._sqlite = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            return self._pg.execute(sql.format(p="%s"), params).fetchall()  # type: ignore[arg-type]
        assert self._sqlite is not None
        return self._sqlite.execute(sql.format(p="?"), params).fetchall()

    def counts(self, prefix: str, since_ms: int) -> tuple[dict[str, int], int]:
        """Executions of this run by status, and the events they have appended so far."""
        rows = self._rows(
            "SELECT status, count(*), sum(next_event_id - 1) FROM executions "
            "WHERE namespace = {p} AND start_time_ms >= {p} AND workflow_id LIKE {p} "
            "GROUP BY status",
            (NAMESPACE, since_ms, prefix + "%"),
        )
        return {str(status): int(n) for status, n, _ in rows}, sum(int(e or 0) for *_, e in rows)

    def last_close_ms(self, prefix: str, since_ms: int) -> int | None:
        """When the last execution of this run closed (epoch ms), if any has."""
        rows = self._rows(
            "SELECT max(close_time_ms) FROM executions "
            "WHERE namespace = {p} AND start_time_ms >= {p} AND workflow_id LIKE {p}",
            (NAMESPACE, since_ms, prefix + "%"),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def events_per_workflow(self, prefix: str) -> float:
        """Events of one completed workflow (from the warm-up runs)."""
        rows = self._rows(
            "SELECT avg(next_event_id - 1) FROM executions WHERE namespace = {p} "
            "AND status = 'completed' AND workflow_id LIKE {p}",
            (NAMESPACE, prefix + "%"),
        )
        return float(rows[0][0]) if rows and rows[0][0] else 0.0

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()


# --------------------------------------------------------------------------- Cadenza processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO
        )
        self.pid = self.popen.pid
        self.peak_rss_mb = 0.0

    def note_rss(self) -> None:
        value = proc_peak_rss_mb(self.pid)
        if value is not None:
            self.peak_rss_mb = max(self.peak_rss_mb, value)

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid) or 0.0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        self.note_rss()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Cluster:
    """``servers`` × ``cadenza server`` and ``workers`` × ``cadenza worker`` on one database."""

    def __init__(self, db_url: str, servers: int, workers: int, logdir: Path) -> None:
        self.db_url = db_url
        self.token = secrets.token_hex(16)
        self.n_servers = servers
        self.n_workers = workers
        self.logdir = logdir
        self.servers: list[Proc] = []
        self.workers: list[Proc] = []
        self.urls: list[str] = []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CADENZA_WORKER_TOKEN"] = self.token
        env.setdefault("CADENZA_LOG_LEVEL", "WARNING")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> None:
        cli = [sys.executable, "-m", "cadenza.frontend.cli"]
        tag = secrets.token_hex(2)
        for i in range(self.n_servers):
            port = free_port()
            argv = [*cli, "server", "--db", self.db_url, "--port", str(port)]
            self.servers.append(Proc(f"server{i}-{tag}", argv, self._env(), self.logdir))
            self.urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(self.servers, self.urls, strict=True):
            self._wait_healthy(proc, url)
        for i in range(self.n_workers):
            url = self.urls[i % len(self.urls)]
            argv = [*cli, "worker", "--server", url, "--token", self.token]
            argv += ["--module", str(CADENZA_SIDE), *WORKER_ARGS]
            self.workers.append(Proc(f"worker{i}-{tag}", argv, self._env(), self.logdir))

    def _wait_healthy(self, proc: Proc, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url + "/healthz", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{proc.name} not healthy after {timeout:g} s:\n{proc.tail()}")

    def procs(self) -> list[Proc]:
        return [*self.servers, *self.workers]

    def check_alive(self) -> None:
        for proc in self.procs():
            if not proc.alive():
                raise RuntimeError(f"{proc.name} died:\n{proc.tail()}")

    def cpu(self) -> float:
        return sum(proc.cpu() for proc in self.procs())

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds of the servers and of the workers so far."""
        return sum(p.cpu() for p in self.servers), sum(p.cpu() for p in self.workers)

    def note_rss(self) -> None:
        for proc in self.procs():
            proc.note_rss()

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()
        for proc in self.servers:
            proc.stop()

    def memory(self) -> dict[str, float]:
        self.note_rss()
        return {
            "server_mb": max((p.peak_rss_mb for p in self.servers), default=0.0),
            "worker_mb": max((p.peak_rss_mb for p in self.workers), default=0.0),
            "total_mb": sum(p.peak_rss_mb for p in self.procs()),
        }

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remote_clients(cluster: Cluster) -> list[Any]:
    from cadenza.frontend.remote import RemoteService
    from cadenza.sdk import Client

    return [
        Client(RemoteService(url, token=cluster.token, request_timeout=120.0))
        for url in cluster.urls
    ]


async def _warm_up(clients: list[Any], count: int = 5) -> None:
    """Run a few workflows to the end (also proves the workers are polling)."""
    for i in range(count):
        client = clients[i % len(clients)]
        result = await asyncio.wait_for(
            client.execute_workflow(
                WORKFLOW_TYPE, id=f"warm-{secrets.token_hex(4)}", task_queue=TASK_QUEUE
            ),
            timeout=120,
        )
        if result != 3:
            raise RuntimeError(f"warm-up workflow returned {result!r}, expected 3")


# --------------------------------------------------------------------------- measurements


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(samples, 50),
        "p90_ms": pct(samples, 90),
        "p99_ms": pct(samples, 99),
        "mean_ms": statistics.mean(samples),
        "runs": len(samples),
    }


async def latency_of(client: Any, runs: int) -> dict[str, float]:
    """End to end: start + wait for the result, ``runs`` times one after the other."""
    samples: list[float] = []
    for i in range(runs + 5):
        started = time.perf_counter()
        result = await client.execute_workflow(
            WORKFLOW_TYPE, id=f"lat-{secrets.token_hex(6)}", task_queue=TASK_QUEUE
        )
        if result != 3:
            raise RuntimeError(f"workflow returned {result!r}, expected 3")
        if i >= 5:  # warm-up runs are not counted
            samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


async def embedded_latency(db_url: str, runs: int) -> dict[str, float]:
    """Engine, client and worker in this process (what ``cadenza dev`` runs)."""
    sys.path.insert(0, str(HERE))
    from _cadenza_side import ThreeNoopLocalSteps, ThreeNoopSteps, noop_step

    from cadenza.engine import Engine, Settings
    from cadenza.sdk import Client, Worker

    engine = Engine(Settings(database_url=db_url))
    await engine.start()
    try:
        client = Client(engine)
        async with Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[ThreeNoopSteps, ThreeNoopLocalSteps],
            activities=[noop_step],
        ):
            return await latency_of(client, runs)
    finally:
        await engine.stop()


async def cluster_latency(cluster: Cluster, runs: int) -> dict[str, float]:
    clients = _remote_clients(cluster)
    try:
        await _warm_up(clients)
        return await latency_of(clients[0], runs)
    finally:
        for client in clients:
            await client.close()


@dataclass
class Throughput:
    """One throughput measurement (see README for the meaning of each field)."""

    requested: int
    started: int = 0
    completed: int = 0
    failed: int = 0
    start_errors: int = 0
    capped: bool = False
    start_seconds: float = 0.0
    wall_seconds: float = 0.0
    events: int = 0
    events_per_wf: float = 0.0
    workflows_per_s: float = 0.0
    steps_per_s: float = 0.0
    app_cpu_ms_per_wf: float = 0.0
    server_cpu_ms_per_wf: float = 0.0
    worker_cpu_ms_per_wf: float = 0.0
    server_busy_pct: float = 0.0
    worker_busy_pct: float = 0.0
    pg_cpu_ms_per_wf: float | None = None
    machine_busy_pct: float = 0.0
    other_busy_pct: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)
    error: str | None = None


async def cluster_throughput(
    cluster: Cluster,
    count: int,
    max_seconds: float,
    pg_dbname: str | None,
    profile: Callable[[], None] | None = None,
) -> Throughput:
    """Start ``count`` workflows as fast as the servers take them; wait until all complete
    (or ``max_seconds`` pass: then the rate is the events appended, in workflows' worth)."""
    clients = _remote_clients(cluster)
    completions = Completions(cluster.db_url)
    out = Throughput(requested=count)
    try:
        await _warm_up(clients)
        prefix = f"tp-{secrets.token_hex(3)}-"
        since_ms = int(time.time() * 1000) - 2000
        next_index = 0
        errors: list[str] = []

        async def starter() -> None:
            nonlocal next_index
            while next_index < count:
                index = next_index
                next_index += 1
                client = clients[index % len(clients)]
                try:
                    await client.start_workflow(
                        WORKFLOW_TYPE, id=f"{prefix}{index}", task_queue=TASK_QUEUE
                    )
                    out.started += 1
                except Exception as exc:  # counted and shown; the run goes on
                    out.start_errors += 1
                    if len(errors) < 3:
                        errors.append(repr(exc))
                if out.started == count:
                    out.start_seconds = time.perf_counter() - t0

        pg_cpu = PgCpu(pg_dbname)
        pg_cpu.start()
        app_cpu0 = cluster.cpu()
        split0 = cluster.cpu_split()
        busy0 = machine_busy_seconds()
        t0 = time.perf_counter()
        t0_epoch = time.time()
        starters = [asyncio.create_task(starter()) for _ in range(STARTERS)]
        if profile is not None:
            profile()
        loop_n = 0
        while True:
            await asyncio.sleep(0.25)
            loop_n += 1
            elapsed = time.perf_counter() - t0
            counts, out.events = await asyncio.to_thread(completions.counts, prefix, since_ms)
            out.completed = counts.get("completed", 0)
            out.failed = sum(
                n for status, n in counts.items() if status not in ("completed", "running")
            )
            if loop_n % 4 == 0:
                pg_cpu.sample()
                cluster.note_rss()
                cluster.check_alive()
            if out.completed + out.failed + out.start_errors >= count:
                break
            if elapsed > max_seconds:
                out.capped = True
                break
        # CPU and machine counters cover the polled window; the wall time ends when the last
        # workflow closed (its close time in the database), not at the next 0.25 s poll.
        polled_seconds = time.perf_counter() - t0
        out.wall_seconds = polled_seconds
        if not out.capped:
            last_ms = await asyncio.to_thread(completions.last_close_ms, prefix, since_ms)
            if last_ms is not None:
                out.wall_seconds = min(polled_seconds, max(0.001, last_ms / 1000 - t0_epoch))
        app_cpu = cluster.cpu() - app_cpu0
        split = [b - a for a, b in zip(split0, cluster.cpu_split(), strict=True)]
        busy = machine_busy_seconds() - busy0
        pg_seconds = pg_cpu.seconds() if pg_dbname else None
        for task in starters:
            task.cancel()
        await asyncio.gather(*starters, return_exceptions=True)
        if not out.start_seconds:
            out.start_seconds = out.wall_seconds
        # A capped run is judged by the work done: events appended / events of one workflow
        # (with thousands queued, few workflows finish early, yet all of them advance).
        out.events_per_wf = completions.events_per_workflow("warm-")
        work = float(out.completed)
        if out.capped and out.events_per_wf:
            work = max(work, out.events / out.events_per_wf)
        done = max(1.0, work)
        out.workflows_per_s = work / out.wall_seconds
        out.steps_per_s = 3 * out.workflows_per_s
        out.app_cpu_ms_per_wf = 1000 * app_cpu / done
        out.server_cpu_ms_per_wf = 1000 * split[0] / done
        out.worker_cpu_ms_per_wf = 1000 * split[1] / done
        # Per process: a process at 100 % is the bottleneck (its event loop is one thread).
        out.server_busy_pct = 100 * split[0] / (polled_seconds * max(1, cluster.n_servers))
        out.worker_busy_pct = 100 * split[1] / (polled_seconds * max(1, cluster.n_workers))
        out.pg_cpu_ms_per_wf = None if pg_seconds is None else 1000 * pg_seconds / done
        cores = os.cpu_count() or 1
        out.machine_busy_pct = 100 * busy / (polled_seconds * cores)
        ours = app_cpu + (pg_seconds or 0.0)
        out.other_busy_pct = max(0.0, 100 * (busy - ours) / (polled_seconds * cores))
        out.memory = cluster.memory()
        if errors:
            out.error = f"{out.start_errors} start errors, e.g. {errors[0]}"
        if out.failed:
            out.error = (out.error + "; " if out.error else "") + f"{out.failed} failed"
        return out
    finally:
        completions.close()
        for client in clients:
            await client.close()


# --------------------------------------------------------------------------- DBOS


def ensure_dbos_python(path: str | None) -> Path:
    """The DBOS virtualenv's python; the venv is created (``pip install dbos``) if missing."""
    if path:
        python = Path(path)
        if not python.exists():
            raise SystemExit(f"--dbos-python {path}: not found")
        return python
    python = DEFAULT_DBOS_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating DBOS's own virtualenv {DEFAULT_DBOS_VENV} (pip install dbos)")
        subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_DBOS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "dbos"], check=True)
    return python


def run_dbos(
    python: Path,
    db_url: str,
    phase: str,
    plan: Plan,
    logdir: Path,
    pg_dbname: str | None,
) -> dict[str, Any]:
    """Run ``_dbos_side.py`` for one phase; returns its JSON (plus PostgreSQL CPU)."""
    argv = [str(python), str(DBOS_SIDE), "--db", db_url, "--phase", phase]
    argv += ["--latency-runs", str(plan.latency_runs), "--workflows", str(plan.workflows)]
    argv += ["--max-seconds", str(plan.max_seconds)]
    pg_cpu = PgCpu(pg_dbname)
    pg_cpu.start()
    busy0 = machine_busy_seconds()
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    with (logdir / f"dbos-{phase}.log").open("ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=HERE)
        while proc.poll() is None:
            time.sleep(0.5)
            pg_cpu.sample()
        stdout = proc.stdout.read() if proc.stdout else b""
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (logdir / f"dbos-{phase}.log").read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError(f"DBOS {phase} failed ({proc.returncode}):\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    if phase == "throughput":
        tp = result["throughput"]
        done = max(1, tp["completed"])
        if pg_dbname:
            tp["pg_cpu_ms_per_wf"] = 1000 * pg_cpu.seconds() / done
        busy = machine_busy_seconds() - busy0
        cores = os.cpu_count() or 1
        tp["machine_busy_pct"] = 100 * busy / (wall * cores)
    return result


# --------------------------------------------------------------------------- pre-fill


def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


_SHARD_SQL = (  # shard_for() in SQL: the first 8 bytes of sha256, unsigned, modulo the count
    "mod(mod(('x' || encode(substring(sha256(convert_to(%(ns)s, 'UTF8') || '\\x00'::bytea "
    "|| convert_to({wid}, 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint::numeric "
    "+ 18446744073709551616, 18446744073709551616), %(shards)s)::int"
)


@contextlib.contextmanager
def _indexes_dropped(
    conn: psycopg.Connection[Any], tables: tuple[str, ...], drop: bool
) -> Iterator[None]:
    """Drop the tables' indexes (and the constraints behind them) for a bulk load, and build
    them again, with the same names and definitions, afterwards: building an index once is
    far cheaper than 23 million random inserts into it."""
    if not drop:
        yield
        return
    found = conn.execute(
        "SELECT t.relname, i.relname, pg_get_indexdef(i.oid), c.conname, "
        "pg_get_constraintdef(c.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "LEFT JOIN pg_constraint c ON c.conindid = i.oid "
        "WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace",
        (list(tables),),
    ).fetchall()
    for table, index, _, constraint, _ in found:
        if constraint:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
        else:
            conn.execute(f'DROP INDEX "{index}"')
    try:
        yield
    finally:
        log("  pre-fill: building the indexes again")
        for table, _, indexdef, constraint, condef in found:
            if constraint:
                conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {condef}')
            else:
                conn.execute(indexdef)


def prefill(dsn: str, target: int, batch: int = 50_000) -> dict[str, Any]:
    """Add copies of one real completed execution until ``executions`` holds ``target`` rows.

    The template is the oldest completed execution of ``ThreeNoopSteps`` (a real one, written by
    the engine). Each copy gets its own workflow id (``fill-N``), run id (an md5-derived UUID),
    shard (the same hash as ``shard_for``), times (shifted back N seconds) and event hashes;
    ``state`` and event data have the template's run and workflow ids replaced. Columns are
    read from the database, so the copy follows schema changes. The copies' hash chains are not
    valid chains (nothing on the hot path reads them).
    """
    from cadenza.engine._shards import shard_for

    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        have = int(conn.execute("SELECT count(*) FROM executions").fetchone()[0])  # type: ignore[index]
        if have >= target:
            return {"added": 0, "seconds": 0.0, "stored": have}
        tmpl = conn.execute(
            "SELECT shard_id, run_id, workflow_id, namespace FROM executions "
            "WHERE status = 'completed' AND workflow_type = %s "
            "ORDER BY start_time_ms LIMIT 1",
            (WORKFLOW_TYPE,),
        ).fetchone()
        if tmpl is None:
            raise RuntimeError("no completed execution to copy")
        t_shard, t_run, t_wid, t_ns = tmpl
        shards = int(conn.execute("SELECT count(*) FROM shards").fetchone()[0])  # type: ignore[index]
        check = conn.execute(
            "SELECT " + _SHARD_SQL.format(wid="%(wid)s"),
            {"ns": t_ns, "wid": "fill-123", "shards": shards},
        ).fetchone()
        if check is None or check[0] != shard_for(t_ns, "fill-123", shards):
            raise RuntimeError("the SQL shard hash does not match shard_for")
        first = int(
            conn.execute(
                "SELECT coalesce(max(substring(workflow_id from 6)::bigint), 0) FROM executions "
                "WHERE workflow_id LIKE 'fill-%%'"
            ).fetchone()[0]  # type: ignore[index]
        )
        ex_cols = _columns(conn, "executions")
        ev_cols = _columns(conn, "events")
        ex_expr = {
            "shard_id": "n.shard",
            "run_id": "n.rid",
            "workflow_id": "n.wid",
            "start_time_ms": "e.start_time_ms - n.g * 1000",
            "close_time_ms": "e.close_time_ms - n.g * 1000",
            "state": "replace(replace(e.state, %(trun)s, n.rid), "
            "%(twid_json)s, '\"workflow_id\":\"' || n.wid || '\"')",
            "sticky_worker": "NULL",
        }
        ev_expr = {
            "shard_id": "n.shard",
            "run_id": "n.rid",
            "event_time_ms": "e.event_time_ms - n.g * 1000",
            # only event 1 names the run (first_run_id); hashes stay the template's (64 hex
            # characters like a real one): per-row functions would double the fill time
            "data": "CASE WHEN e.event_id = 1 THEN replace(e.data, %(trun)s, n.rid) ELSE e.data END",
        }
        numbers = (
            "WITH n AS (SELECT g, 'fill-' || g AS wid, md5('fill-' || g)::uuid::text AS rid, "
            + _SHARD_SQL.format(wid="'fill-' || g")
            + " AS shard FROM generate_series(%(a)s::bigint, %(b)s::bigint) g) "
        )

        def insert_sql(table: str, cols: list[str], exprs: dict[str, str]) -> str:
            select = ", ".join(exprs.get(c, f"e.{c}") for c in cols)
            return (
                f"{numbers}INSERT INTO {table} ({', '.join(cols)}) SELECT {select} "
                f"FROM template_{table} e CROSS JOIN n"
            )

        ex_sql = insert_sql("executions", ex_cols, ex_expr)
        ev_sql = insert_sql("events", ev_cols, ev_expr)
        missing = target - have
        params = {
            "ns": t_ns,
            "shards": shards,
            "trun": t_run,
            "twid_json": f'"workflow_id":"{t_wid}"',
        }
        conn.execute("SET maintenance_work_mem = '512MB'")
        with _indexes_dropped(conn, ("executions", "events"), missing >= 100_000):
            # two loaders in parallel, each on its own half of the numbers
            half = missing // 2
            ranges = [(first + 1, first + half), (first + half + 1, first + missing)]
            progress = {"done": 0, "have": have, "target": target}
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                jobs = [
                    pool.submit(
                        _fill_range,
                        dsn,
                        (t_shard, t_run),
                        lo,
                        hi,
                        batch,
                        params,
                        ex_sql,
                        ev_sql,
                        progress,
                    )
                    for lo, hi in ranges
                    if hi >= lo
                ]
                for job in jobs:
                    job.result()
        conn.execute("ANALYZE executions")
        conn.execute("ANALYZE events")
    return {"added": missing, "seconds": time.perf_counter() - t0, "stored": target}


def _fill_range(
    dsn: str,
    template: tuple[int, str],
    low: int,
    high: int,
    batch: int,
    params: dict[str, Any],
    ex_sql: str,
    ev_sql: str,
    progress: dict[str, int],
) -> None:
    """Insert copies ``fill-low`` … ``fill-high`` on a connection of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for table in ("executions", "events"):  # the template, read once per connection
            conn.execute(
                f"CREATE TEMP TABLE template_{table} AS SELECT * FROM {table} "
                "WHERE shard_id = %s AND run_id = %s",
                template,
            )
        start = low
        while start <= high:
            end = min(high, start + batch - 1)
            with conn.transaction():
                conn.execute(ex_sql, {**params, "a": start, "b": end})
                conn.execute(ev_sql, {**params, "a": start, "b": end})
            progress["done"] += end - start + 1
            start = end + 1
            log(f"  pre-fill: {progress['have'] + progress['done']:,}/{progress['target']:,}")


# --------------------------------------------------------------------------- profiling


def start_py_spy(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100"]
    argv += ["-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_CADENZA_FRAME = re.compile(r"\((engine|history|frontend|sdk|timers|activities)/")
_LAYERS = (
    ("SQLAlchemy", "sqlalchemy/"),
    ("psycopg", "psycopg"),
    ("aiohttp", "aiohttp/"),
    ("asyncio + selectors", "asyncio/"),
    ("asyncio + selectors", "selectors.py"),
    ("greenlet", "greenlet"),
    ("msgspec/json", "msgspec"),
    ("msgspec/json", "json/"),
    ("prometheus_client", "prometheus_client/"),
)


def _function(frame: str) -> str:
    """``name (path:line)`` without the line number."""
    return re.sub(r":\d+\)$", ")", frame)


def _layer(leaf: str) -> str:
    for name, marker in _LAYERS:
        if marker in leaf:
            return name
    if _CADENZA_FRAME.search(leaf):
        return "cadenza code"
    return "other"


def summarize_profile(raw: Path, top: int = 15) -> list[str]:
    """Where a py-spy raw (collapsed stacks) profile spends its samples: self time by library,
    the busiest functions by self time, and the cadenza functions by inclusive time."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    layers: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + n
        layers[_layer(frames[-1])] = layers.get(_layer(frames[-1]), 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return ["(no samples)"]

    def share(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [f"{total} samples. Self time by library:"]
    lines += [f"  {share(n)}  {name}" for name, n in sorted(layers.items(), key=lambda kv: -kv[1])]
    lines.append("Functions by self time:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {share(n)}  {frame}")
    lines.append("Cadenza functions by inclusive time:")
    ours = [(f, n) for f, n in inclusive.items() if _CADENZA_FRAME.search(f)]
    skip = ("main (", "<module> (")
    ours = [(f, n) for f, n in ours if not f.startswith(skip)]
    for frame, n in sorted(ours, key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"  {share(n)}  {frame}")
    return lines


# --------------------------------------------------------------------------- the run


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    scale: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    worker_profile: list[str] = field(default_factory=list)
    throughput_runs: dict[str, list[float]] = field(default_factory=dict)


def _median_run(
    results: Results,
    label: str,
    runs: int,
    action: Callable[[int], Any],
    rate: Callable[[Any], float],
) -> Any:
    """Run a throughput measurement ``runs`` times (``action(i)``, i from 0); the outcome
    with the median rate. Every run's rate is kept in ``results.throughput_runs``."""
    outcomes = []
    for i in range(runs):
        title = label + (f" (run {i + 1}/{runs})" if runs > 1 else "")
        out = _guard(results, title, functools.partial(action, i))
        if out:
            outcomes.append(out)
    if not outcomes:
        return None
    results.throughput_runs[label] = [rate(o) for o in outcomes]
    return sorted(outcomes, key=rate)[len(outcomes) // 2]


def _guard(results: Results, label: str, action: Callable[[], Any]) -> Any:
    """Run one measurement; a failure is recorded and shown instead of ending the run."""
    log(label)
    try:
        return action()
    except Exception as exc:
        message = f"{label}: {type(exc).__name__}: {exc}"
        log("FAILED " + message)
        results.errors.append(message)
        return None


class Backend:
    """Fresh databases of one kind: PostgreSQL databases on ``server`` (dropped afterwards) or
    SQLite files in a temporary folder."""

    def __init__(self, name: str, server: str, folder: Path) -> None:
        self.name = name
        self.server = server
        self.folder = folder

    @contextlib.contextmanager
    def fresh(self, label: str) -> Iterator[tuple[str, str | None]]:
        """``(url, PostgreSQL database name or None)`` of a new, empty database."""
        if self.name == "PostgreSQL":
            with fresh_pg_database(self.server, label) as dbname:
                yield pg_dsn(self.server, dbname), dbname
            return
        path = self.folder / f"{label}-{secrets.token_hex(4)}.db"
        try:
            yield f"sqlite:///{path}", None
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


def _topology(servers: int, workers: int) -> str:
    return f"{servers} server{'s' * (servers > 1)} + {workers} worker{'s' * (workers > 1)}"


def run_backend(
    backend: Backend,
    dbos_python: Path | None,
    plan: Plan,
    logdir: Path,
    results: Results,
    args: argparse.Namespace,
) -> None:
    """Latency and throughput of DBOS and Cadenza on one backend, each on a fresh database."""
    name = backend.name

    def dbos(phase: str) -> dict[str, Any]:
        assert dbos_python is not None
        with backend.fresh("dbos") as (url, dbname):
            return run_dbos(dbos_python, url, phase, plan, logdir, dbname)

    if dbos_python is not None:
        out = _guard(results, f"DBOS latency on {name}", lambda: dbos("latency"))
        if out:
            results.meta["dbos_version"] = out["dbos_version"]
            latency = out["latency"]
            results.latency[f"DBOS|{name}|start_workflow + get_result"] = latency["start_and_wait"]
            results.latency[f"DBOS|{name}|direct call"] = latency["direct_call"]

    def embedded() -> dict[str, float]:
        with backend.fresh("cadenza") as (url, _):
            return asyncio.run(embedded_latency(url, plan.latency_runs))

    def remote() -> dict[str, float]:
        with backend.fresh("cadenza") as (url, _), Cluster(url, 1, 1, logdir) as cluster:
            return asyncio.run(cluster_latency(cluster, plan.latency_runs))

    for how, action in (("embedded (1 process)", embedded), ("1 server + 1 worker (HTTP)", remote)):
        lat = _guard(results, f"Cadenza {how} latency on {name}", action)
        if lat:
            results.latency[f"Cadenza|{name}|{how}"] = lat

    if dbos_python is not None:
        out = _median_run(
            results,
            f"DBOS throughput on {name}",
            plan.throughput_runs,
            lambda _i: dbos("throughput"),
            lambda o: o["throughput"]["workflows_per_s"],
        )
        if out:
            tp = out["throughput"]
            tp["memory"] = {"total_mb": out["peak_rss_mb"]}
            results.throughput[f"DBOS|{name}|1 process"] = tp

    for servers, workers in [(1, 1)] + ([(2, 2)] if name == "PostgreSQL" else []):
        label = _topology(servers, workers)
        profile = args.profile and name == "PostgreSQL" and servers == 1

        def throughput(
            run: int, servers: int = servers, workers: int = workers, profile: bool = profile
        ):
            with (
                backend.fresh("cadenza") as (url, dbname),
                Cluster(url, servers, workers, logdir) as cluster,
            ):
                wanted = profile and run == 0  # py-spy on the first run only
                hook = _profiler(cluster, plan, logdir, results, args) if wanted else None
                return asyncio.run(
                    cluster_throughput(cluster, plan.workflows, plan.max_seconds, dbname, hook)
                )

        tp = _median_run(
            results,
            f"Cadenza {label} throughput on {name}",
            plan.throughput_runs,
            throughput,
            lambda t: t.workflows_per_s,
        )
        if tp:
            results.throughput[f"Cadenza|{name}|{label}"] = asdict(tp)
            log(f"  {tp.completed}/{tp.requested} in {tp.wall_seconds:.0f} s")
        raw = Path(results.meta.get("profile_raw", "/nonexistent"))
        if profile and raw.exists():
            results.profile = summarize_profile(raw)
        worker_raw = Path(results.meta.get("worker_profile_raw", "/nonexistent"))
        if profile and worker_raw.exists():
            results.worker_profile = summarize_profile(worker_raw)


def _profiler(
    cluster: Cluster, plan: Plan, logdir: Path, results: Results, args: argparse.Namespace
) -> Callable[[], None] | None:
    """A hook that starts py-spy on the first server once the load is on."""
    py_spy = args.py_spy or shutil.which("py-spy")
    if not py_spy:
        results.errors.append("--profile: py-spy not found (install it, or give --py-spy PATH)")
        return None
    raw = logdir / "server-profile.raw"
    worker_raw = logdir / "worker-profile.raw"
    results.meta["profile_raw"] = str(raw)
    results.meta["worker_profile_raw"] = str(worker_raw)
    seconds = min(60.0, plan.max_seconds - 5)

    def hook() -> None:
        start_py_spy(py_spy, cluster.servers[0].pid, seconds, raw)
        start_py_spy(py_spy, cluster.workers[0].pid, seconds, worker_raw)

    return hook


def end_leftovers(dsn: str) -> int:
    """With no server running: mark the executions a capped run left running as terminated
    and drop their tasks and timers, so the next measurement starts from a quiet database."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "UPDATE executions SET status = 'terminated', close_time_ms = start_time_ms "
            "WHERE status = 'running'"
        )
        conn.execute("DELETE FROM tasks")
        conn.execute("DELETE FROM timers")
        return cur.rowcount


def run_scale(server: str, plan: Plan, logdir: Path, results: Results) -> None:
    """Throughput of a 1 + 1 cluster as the stored workflows grow."""
    with fresh_pg_database(server, "scale") as dbname:
        dsn = pg_dsn(server, dbname)
        with Cluster(dsn, 1, 1, logdir) as cluster:  # the schema, and real rows to copy
            asyncio.run(cluster_latency(cluster, 5))
        for point in plan.scale_points:
            fill = _guard(
                results, f"pre-fill to {point:,} workflows", lambda p=point: prefill(dsn, p)
            )
            if fill is None:
                return
            log(f"  pre-fill took {fill['seconds']:.0f} s")

            def measure() -> Throughput:
                with Cluster(dsn, 1, 1, logdir) as cluster:
                    return asyncio.run(
                        cluster_throughput(
                            cluster, plan.scale_workflows, plan.scale_max_seconds, dbname
                        )
                    )

            tp = _guard(results, f"Cadenza throughput at {point:,} stored", measure)
            if tp is None:
                continue
            if tp.capped:
                log(f"  ended {end_leftovers(dsn)} workflows the capped run left running")
            results.scale.append(
                {"stored": fill["stored"], "prefill_seconds": fill["seconds"], **asdict(tp)}
            )
            log(f"  {tp.completed}/{tp.requested} in {tp.wall_seconds:.0f} s")


# --------------------------------------------------------------------------- the table


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def render(results: Results, plan: Plan) -> str:
    meta = results.meta
    out: list[str] = []
    out.append("Cadenza vs DBOS Transact: one workflow of three sequential no-op steps")
    out.append(
        f"machine: {meta['cpus']} CPUs; load average {meta['load_start']} at start, "
        f"{meta.get('load_end', '?')} at end; PostgreSQL {meta['pg_version']}; "
        f"cadenza {meta['git']}; DBOS {meta.get('dbos_version', 'not run')}; "
        f"{'--quick' if meta['quick'] else 'full run'}, {meta.get('minutes', 0):.1f} min; "
        f"Cadenza workflow {meta.get('workflow', WORKFLOW_TYPE)}"
    )
    out.append("")
    out.append(
        f"Latency, one workflow end to end ({plan.latency_runs} sequential runs after 5 warm-up)"
    )
    out.append(
        f"  {'system':<8} {'database':<11} {'how':<34} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    )
    for key, row in results.latency.items():
        system, backend, how = key.split("|")
        out.append(
            f"  {system:<8} {backend:<11} {how:<34} {fmt(row['p50_ms']):>8} "
            f"{fmt(row['p99_ms']):>8} {fmt(row['mean_ms']):>8}"
        )
    out.append("")
    out.append(
        f"Throughput ({plan.workflows} workflows started as fast as possible, until all complete; "
        f"cap {plan.max_seconds:g} s)"
    )
    out.append(
        f"  {'system':<8} {'database':<11} {'topology':<20} {'done':>11} {'wall s':>7} "
        f"{'wf/s':>7} {'steps/s':>8} {'app CPU':>8} {'PG CPU':>7} {'peak RSS MB':>17} {'busy/other':>10}"
    )
    out.append(
        f"  {'':<8} {'':<11} {'':<20} {'':>11} {'':>7} {'':>7} {'':>8} {'ms/wf':>8} {'ms/wf':>7} {'server/worker/all':>17} {'% of CPU':>10}"
    )
    for key, row in results.throughput.items():
        system, backend, topo = key.split("|")
        memory = row.get("memory", {})
        if system == "DBOS":
            mem = f"{fmt(memory.get('total_mb'), 0)} (1 proc)"
            app_cpu = row.get("cpu_ms_per_workflow")
            other = "—"
        else:
            mem = (
                f"{fmt(memory.get('server_mb'), 0)}/{fmt(memory.get('worker_mb'), 0)}/"
                f"{fmt(memory.get('total_mb'), 0)}"
            )
            app_cpu = row.get("app_cpu_ms_per_wf")
            other = fmt(row.get("other_busy_pct"), 0)
        done = f"{row['completed']}/{row['requested']}" + ("*" if row.get("capped") else "")
        out.append(
            f"  {system:<8} {backend:<11} {topo:<20} {done:>11} {fmt(row['wall_seconds']):>7} "
            f"{fmt(row['workflows_per_s']):>7} {fmt(row['steps_per_s']):>8} {fmt(app_cpu):>8} "
            f"{fmt(row.get('pg_cpu_ms_per_wf')):>7} {mem:>17} "
            f"{fmt(row.get('machine_busy_pct'), 0):>4}/{other:<5}"
        )
    repeated = {k: v for k, v in results.throughput_runs.items() if len(v) > 1}
    if repeated:
        out.append("  each row is the run with the median wf/s of its runs; wf/s of every run:")
        for label, rates in repeated.items():
            out.append(f"    {label}: {', '.join(fmt(r) for r in rates)}")
    split = [
        (key.split("|"), row)
        for key, row in results.throughput.items()
        if not key.startswith("DBOS") and row.get("server_cpu_ms_per_wf")
    ]
    if split:
        out.append(
            "  Cadenza CPU by process: ms/wf, and % of one core per process (a process near"
            " 100 % is the bottleneck)"
        )
        for (_, backend, topo), row in split:
            out.append(
                f"    {backend:<11} {topo:<20} server {fmt(row['server_cpu_ms_per_wf']):>5} ms"
                f" ({fmt(row.get('server_busy_pct'), 0)} %), worker"
                f" {fmt(row['worker_cpu_ms_per_wf']):>5} ms ({fmt(row.get('worker_busy_pct'), 0)} %)"
            )
    if any(row.get("capped") for row in results.throughput.values()):
        out.append(
            "  * capped: not all completed within the cap. Cadenza: wf/s = events appended to the "
            "run's executions / events of one workflow (23) / wall; DBOS: completed / wall"
        )
    out.append("")
    if results.scale:
        out.append(
            f"Cost per workflow as stored workflows grow (PostgreSQL, 1 server + 1 worker, "
            f"{plan.scale_workflows} workflows per point)"
        )
        out.append(
            f"  {'stored':>10} {'pre-fill s':>10} {'done':>9} {'wf/s':>7} {'wall ms/wf':>10} "
            f"{'app CPU ms/wf':>13} {'PG CPU ms/wf':>12}"
        )
        for row in results.scale:
            done = f"{row['completed']}/{row['requested']}" + ("*" if row.get("capped") else "")
            wall_ms = 1000 / row["workflows_per_s"] if row["workflows_per_s"] else None
            out.append(
                f"  {row['stored']:>10,} {fmt(row['prefill_seconds'], 0):>10} {done:>9} "
                f"{fmt(row['workflows_per_s']):>7} {fmt(wall_ms):>10} "
                f"{fmt(row['app_cpu_ms_per_wf']):>13} {fmt(row['pg_cpu_ms_per_wf']):>12}"
            )
        out.append("")
    out.extend(goals(results))
    if results.errors:
        out.append("")
        out.append("Errors (measurements that did not run to the end):")
        out.extend(f"  - {e.splitlines()[0][:300]}" for e in results.errors)
    if results.profile:
        out.append("")
        out.append("Profile of the server during the PostgreSQL 1 + 1 throughput run (py-spy):")
        out.extend("  " + line for line in results.profile)
    if results.worker_profile:
        out.append("")
        out.append("Profile of the worker during the same run (py-spy):")
        out.extend("  " + line for line in results.worker_profile)
    return "\n".join(out)


def goals(results: Results) -> list[str]:
    """The issue's goals with the measured ratios."""
    lines = ["Goals (issue 3), PostgreSQL, Cadenza / DBOS"]
    dbos_tp = results.throughput.get("DBOS|PostgreSQL|1 process")
    for topo in ("1 server + 1 worker", "2 servers + 2 workers"):
        cz = results.throughput.get(f"Cadenza|PostgreSQL|{topo}")
        ratio = None
        if dbos_tp and cz and dbos_tp["workflows_per_s"]:
            ratio = cz["workflows_per_s"] / dbos_tp["workflows_per_s"]
        lines.append(
            f"  throughput ≥ 10× DBOS ({topo:<21}): ratio {fmt(ratio, 2):>6}×  "
            f"{verdict(None if ratio is None else ratio >= 10)}"
        )
    dbos_lat = results.latency.get("DBOS|PostgreSQL|start_workflow + get_result")
    dbos_direct = results.latency.get("DBOS|PostgreSQL|direct call")
    for how in ("1 server + 1 worker (HTTP)", "embedded (1 process)"):
        cz = results.latency.get(f"Cadenza|PostgreSQL|{how}")
        ratio = None
        if dbos_lat and cz:
            ratio = cz["p50_ms"] / dbos_lat["p50_ms"]
        lines.append(
            f"  p50 latency ≤ DBOS's ({how:<26}): ratio {fmt(ratio, 2):>6}×  "
            f"{verdict(None if ratio is None else ratio <= 1.0)}"
            + (
                f"  (vs DBOS direct call: {cz['p50_ms'] / dbos_direct['p50_ms']:.2f}×)"
                if cz and dbos_direct
                else ""
            )
        )
    if len(results.scale) >= 2:
        base = results.scale[0]
        last = results.scale[-1]
        ratio = None
        if base["workflows_per_s"] and last["workflows_per_s"]:
            ratio = base["workflows_per_s"] / last["workflows_per_s"]
        lines.append(
            f"  flat cost per workflow ({base['stored']:,} → {last['stored']:,} stored; "
            f"flat = within 1.25×): wall ms/wf ratio {fmt(ratio, 2)}×  "
            f"{verdict(None if ratio is None else ratio <= 1.25)}"
        )
    else:
        lines.append("  flat cost per workflow: n/a (scale not measured)")
    return lines


def git_describe() -> str:
    """The commit measured: an exported one (``--commit``), or HEAD of the work tree."""
    if os.environ.get("CADENZA_BENCH_COMMIT"):
        return f"{os.environ['CADENZA_BENCH_COMMIT']} (exported with --commit)"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "?"


def reexec_on_commit(rev: str) -> None:
    """Export ``rev`` with ``git archive`` and run this script again with ``cadenza`` imported
    from the export (``PYTHONPATH`` comes before the editable install), so that the numbers
    belong to that commit whatever happens in the work tree meanwhile."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix=f"cadenza-bench-{sha}-"))
    src = root / "src"
    src.mkdir()
    archive = subprocess.run(["git", "archive", sha], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    pyproject = tomllib.loads((src / "pyproject.toml").read_text())
    package = root / "site" / "cadenza"
    package.mkdir(parents=True)
    for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        if name.count(".") == 1:  # cadenza.history -> history, ...
            (package / name.split(".")[1]).symlink_to(src / folder)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root / "site"), env.get("PYTHONPATH", "")) if p
    )
    env["CADENZA_BENCH_SNAPSHOT"] = str(root)
    env["CADENZA_BENCH_COMMIT"] = sha
    log(f"measuring commit {sha}, exported to {root}")
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs; scale to 100k only")
    parser.add_argument(
        "--throughput-runs",
        type=int,
        help="runs per throughput row, the median one shown (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL"
    )
    parser.add_argument(
        "--dbos-python", help="python of DBOS's virtualenv (default /tmp/dbos-venv)"
    )
    parser.add_argument(
        "--steps",
        choices=["activities", "local"],
        default="activities",
        help="Cadenza's steps: normal activities (ThreeNoopSteps, default) or local "
        "activities run inside the workflow task (ThreeNoopLocalSteps)",
    )
    parser.add_argument("--skip-dbos", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--workflows", type=int, help="throughput workflows (default 5000)")
    parser.add_argument("--latency-runs", type=int, help="latency runs (default 200)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the PostgreSQL 1+1 server and worker"
    )
    parser.add_argument("--py-spy", help="path of py-spy (default: on PATH)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--commit", metavar="REV", help="measure this commit (git archive) instead of the work tree"
    )
    args = parser.parse_args()
    global WORKFLOW_TYPE
    WORKFLOW_TYPE = "ThreeNoopLocalSteps" if args.steps == "local" else "ThreeNoopSteps"
    if args.commit and "CADENZA_BENCH_SNAPSHOT" not in os.environ:
        reexec_on_commit(args.commit)  # does not return
    plan = Plan.quick() if args.quick else Plan()
    if args.throughput_runs is not None:
        if args.throughput_runs < 1:
            parser.error("--throughput-runs: must be at least 1")
        plan.throughput_runs = args.throughput_runs
    if args.workflows:
        plan.workflows = args.workflows
    if args.latency_runs:
        plan.latency_runs = args.latency_runs
    server = args.pg.rstrip("/")
    if server.count("/") > 2:  # a database was given: keep only the server part
        server = server.rsplit("/", 1)[0]

    results = Results()
    results.meta = {
        "cpus": os.cpu_count(),
        "load_start": loadavg(),
        "pg_version": pg_version(server),
        "git": git_describe(),
        "quick": args.quick,
        "workflow": WORKFLOW_TYPE,
        "plan": asdict(plan),
    }
    started = time.perf_counter()
    dbos_python = None if args.skip_dbos else ensure_dbos_python(args.dbos_python)
    logdir = Path(tempfile.mkdtemp(prefix="cadenza-vs-dbos-"))
    log(f"logs in {logdir}")
    try:
        with tempfile.TemporaryDirectory(prefix="cadenza-vs-dbos-db-") as folder:
            for name in ["PostgreSQL"] + ([] if args.skip_sqlite else ["SQLite"]):
                backend = Backend(name, server, Path(folder))
                run_backend(backend, dbos_python, plan, logdir, results, args)
        if not args.skip_scale:
            _guard(
                results,
                "cost per workflow vs stored workflows",
                lambda: run_scale(server, plan, logdir, results),
            )
    finally:
        results.meta["load_end"] = loadavg()
        results.meta["minutes"] = (time.perf_counter() - started) / 60
        if os.environ.get("CADENZA_BENCH_SNAPSHOT"):
            shutil.rmtree(os.environ["CADENZA_BENCH_SNAPSHOT"], ignore_errors=True)
        if not args.keep_logs and not results.errors:
            shutil.rmtree(logdir, ignore_errors=True)
        elif results.errors:
            log(f"logs kept in {logdir}")
    print(render(results, plan))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(results), indent=2, default=str))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
