"""CPU used by an idle cluster: servers and workers with nothing to do.

Usage: python ops/bench/idle_cpu.py [--seconds 60] [--servers 2] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Starts ``cadenza server`` processes on a fresh PostgreSQL database (and one on a SQLite file),
one ``cadenza worker`` per server polling it over HTTP, lets them settle for 10 s, then reads
each process's CPU time from ``/proc`` over ``--seconds`` and prints the share of one core. Idle
work is only lease renewal and heartbeats (every lease/3 s) and long polls that the server holds
open without waking: the goal is ~0 %.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "idle-bench-token"
FLOWS = ROOT / "ops" / "bench" / "_cadenza_side.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cadenza.frontend.cli", *args],
            env=env,
            stdout=handle,
            stderr=handle,
        )
    finally:
        handle.close()


def measure(db_url: str, servers: int, seconds: float, folder: Path) -> list[tuple[str, float]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CADENZA_WORKER_TOKEN": TOKEN,
        "CADENZA_DATABASE_URL": db_url,
        "CADENZA_LOG_LEVEL": "WARNING",
    }
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        ports = [free_port() for _ in range(servers)]
        for i, port in enumerate(ports):
            procs.append(
                (f"server {i}", start(["server", "--port", str(port)], env, folder / f"s{i}.log"))
            )
            time.sleep(2.0)  # the first one migrates the database
        for i, port in enumerate(ports):
            worker_args = [
                "worker", "--server", f"http://127.0.0.1:{port}", "--token", TOKEN,
                "--module", str(FLOWS),
            ]  # fmt: skip
            procs.append((f"worker {i}", start(worker_args, env, folder / f"w{i}.log")))
        time.sleep(10.0)
        for name, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {folder}")
        before = {name: cpu_seconds(proc.pid) for name, proc in procs}
        time.sleep(seconds)
        return [(name, (cpu_seconds(p.pid) - before[name]) / seconds * 100) for name, p in procs]
    finally:
        for _, proc in procs:
            proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, share in measure(f"sqlite:///{folder}/idle.db", 1, args.seconds, folder):
            rows.append(("SQLite", name, share))
        db = f"cadenza_idle_{secrets.token_hex(4)}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        try:
            url = args.pg.rsplit("/", 1)[0] + "/" + db
            for name, share in measure(url, args.servers, args.seconds, folder):
                rows.append(("PostgreSQL", name, share))
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(f"idle CPU over {args.seconds:.0f} s (share of one core)")
    print(f"{'database':<12} {'process':<10} {'CPU %':>7}")
    for database, name, share in rows:
        print(f"{database:<12} {name:<10} {share:>7.2f}")


if __name__ == "__main__":
    main()
