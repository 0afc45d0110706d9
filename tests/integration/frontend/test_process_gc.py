"""The garbage-collector setting of the CLI's processes (``gc_threshold``): validated, applied
by ``cadenza server`` and ``cadenza worker``, and startup objects frozen once they run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cadenza.engine import Settings, load_settings
from cadenza.frontend.cli._gc import freeze_startup_objects, tune_garbage_collector
from cadenza.frontend.cli._main import build_parser
from cadenza.history import InvalidArgumentError

TOKEN = "gc-token"
MODULE = Path(__file__).parent / "gc_worker_module.py"


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Whatever a test does to the collector, and the CLI to the root logger, is undone
    afterwards (the commands run in this process here)."""
    saved = gc.get_threshold()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()
        root.handlers[:] = handlers
        root.setLevel(level)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_default_threshold_is_20000_and_the_environment_overrides_it() -> None:
    assert Settings().gc_threshold == 20_000
    assert load_settings(environ={"CADENZA_GC_THRESHOLD": "0"}).gc_threshold == 0


@pytest.mark.parametrize("raw", ["-1", "lots"])
def test_a_bad_threshold_is_refused_by_name(raw: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        load_settings(environ={"CADENZA_GC_THRESHOLD": raw})
    assert "GC_THRESHOLD" in info.value.field.upper()


def test_tuning_sets_the_young_generation_and_keeps_the_older_ratios(restored_gc) -> None:
    gc.set_threshold(700, 10, 10)
    tune_garbage_collector(20_000)
    assert gc.get_threshold() == (20_000, 10, 10)


def test_a_zero_threshold_leaves_python_s_defaults(restored_gc) -> None:
    gc.set_threshold(700, 10, 10)
    tune_garbage_collector(0)
    assert gc.get_threshold() == (700, 10, 10)


def test_freezing_moves_live_objects_out_of_the_collector_s_sight(restored_gc) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    freeze_startup_objects()
    assert gc.get_freeze_count() > 1000  # at least the modules and classes imported so far


async def _healthy(url: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url + "/healthz") as answer:
                    if answer.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} not healthy within {timeout:g} s")
            await asyncio.sleep(0.1)


async def _until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


async def _stopped(task: asyncio.Task[int]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_cli_server_and_worker_apply_the_threshold_and_freeze_after_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_gc
) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    monkeypatch.setenv("CADENZA_GC_THRESHOLD", "12345")
    monkeypatch.setenv("CADENZA_WORKER_TOKEN", TOKEN)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    parser = build_parser()
    server_args = parser.parse_args(
        ["server", "--db", f"sqlite:///{tmp_path}/gc.db", "--port", str(port)]
    )
    server = asyncio.create_task(server_args.handler(server_args))
    try:
        await _healthy(url)
        await _until(lambda: gc.get_freeze_count() > 0, "the server froze its startup objects")
        assert gc.get_threshold() == (12345, 10, 10)

        gc.set_threshold(700, 10, 10)
        gc.unfreeze()
        worker_args = parser.parse_args(
            ["worker", "--server", url, "--token", TOKEN, "--module", str(MODULE)]
        )
        worker = asyncio.create_task(worker_args.handler(worker_args))
        try:
            await _until(lambda: gc.get_freeze_count() > 0, "the worker froze its startup objects")
            assert gc.get_threshold() == (12345, 10, 10)
        finally:
            await _stopped(worker)
    finally:
        await _stopped(server)
