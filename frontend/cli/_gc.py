"""Garbage-collector settings of the long-running processes the CLI starts (``cadenza server``,
``cadenza worker``, ``cadenza dev``).

CPython collects its youngest generation every 700 net allocations of container objects and
scans the whole heap every hundred of those, subject to a 25 % growth rule. A busy server or
worker allocates a few hundred containers per workflow, and a worker keeps thousands of running
workflows cached, so at Python's defaults the full collections alone took a quarter of each
process's CPU in the three-step benchmark (eight of them, 0.5 s, in a 4 s run of 5,000
workflows). Almost nothing a workflow allocates is part of a reference cycle (reference counting
frees it), so collecting less often costs little memory. See ``docs/scaling.md``.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("cadenza.gc")


def tune_garbage_collector(threshold: int) -> None:
    """Collect the young generation every ``threshold`` net allocations; the older ones keep
    Python's ratios (every 10 young, every 10 middle collections). ``0`` leaves Python's
    defaults."""
    if threshold <= 0:
        return
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    log.debug("garbage collector thresholds %s", gc.get_threshold())


def freeze_startup_objects() -> None:
    """Move what startup created (modules, classes, the engine's long-lived parts) out of the
    collector's sight: later full collections scan only what the work created since."""
    gc.collect()
    gc.freeze()
    log.debug("%d startup objects frozen", gc.get_freeze_count())
