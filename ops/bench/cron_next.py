"""Benchmark: cost of ``CronExpression.next_after`` (Quartz-compatible next fire time).

Run from the repository root::

    python ops/bench/cron_next.py [--calls 5000] [--schedules 10000]

It prints

1. a table of microseconds per ``next_after`` call (CPU time, so other load on the machine
   does not inflate it) for common expressions in three zones — one without DST, two with —
   with Quartz's behaviour and with an explicit DST policy;
2. the cost of one "tick" of 10,000 schedules that each compute their next fire every minute
   (a mix of the expressions above, random start instants), as CPU seconds per tick and as
   the share of one core that a tick per minute needs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cadenza.timers._cron import CronDstPolicy, parse_cron

EXPRESSIONS = [
    "0 * * * * ?",
    "0 0/5 * * * ?",
    "*/15 * * * * ?",
    "0 0 12 * * ?",
    "0 30 2 * * ?",
    "0 15 10 ? * MON-FRI",
    "0 0/15 8-17 ? * MON-FRI",
    "0 0 0 L * ?",
    "0 0 9 LW * ?",
    "0 0 9 15W * ?",
    "0 0 9 ? * 6#3",
    "0 0 9 ? * 6L",
    "0 0 0 1 1 ?",
    "*/5 * * * *",
    "0 9 1 * MON",
    "@hourly",
]
ZONES = ["Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York"]
POLICY = CronDstPolicy(nonexistent="shift_forward", ambiguous="first")


def _per_call(expression: str, zone: ZoneInfo, calls: int, policy: CronDstPolicy | None) -> float:
    cron = parse_cron(expression)
    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    starts = [base + timedelta(seconds=rng.randrange(365 * 86400)) for _ in range(calls)]
    for after in starts[:50]:  # warm the zone tables
        cron.next_after(after, zone, policy)
    began = time.process_time()
    for after in starts:
        cron.next_after(after, zone, policy)
    return (time.process_time() - began) / calls * 1e6


def _tick(schedules: int) -> tuple[float, float]:
    rng = random.Random(11)
    crons = [parse_cron(rng.choice(EXPRESSIONS)) for _ in range(schedules)]
    zones = [ZoneInfo(rng.choice(ZONES)) for _ in range(schedules)]
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Europe springs forward
    rounds = []
    for minute in range(3):
        at = now + timedelta(minutes=minute)
        began = time.process_time()
        for cron, zone in zip(crons, zones, strict=True):
            cron.next_after(at, zone)
        rounds.append(time.process_time() - began)
    seconds = statistics.median(rounds)
    return seconds, seconds / 60 * 100


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per cell (default 5000)")
    parser.add_argument("--schedules", type=int, default=10_000, help="schedules per tick")
    args = parser.parse_args()

    zones = [ZoneInfo(z) for z in ZONES]
    header = "".join(f"{z.split('/')[-1]:>14}" for z in ZONES)
    print(f"next_after, microseconds of CPU per call ({args.calls} calls per cell)")
    print(f"{'expression':28}{header}{'Berlin+policy':>16}")
    print("-" * (28 + 14 * len(ZONES) + 16))
    for expression in EXPRESSIONS:
        cells = [_per_call(expression, zone, args.calls, None) for zone in zones]
        with_policy = _per_call(expression, zones[1], args.calls, POLICY)
        row = "".join(f"{cell:14.1f}" for cell in cells)
        print(f"{expression:28}{row}{with_policy:16.1f}")
    seconds, share = _tick(args.schedules)
    print()
    print(
        f"{args.schedules} schedules, each computing its next fire once a minute: "
        f"{seconds * 1000:.0f} ms of CPU per tick = {share:.2f}% of one core"
    )


if __name__ == "__main__":
    main()
