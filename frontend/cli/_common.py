"""Pieces shared by the commands: settings from arguments, clients, module loading, logging."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from cadenza.engine import Engine, Settings, load_settings
from cadenza.frontend.cli._main import CliError
from cadenza.history import InvalidArgumentError


def add_config_arguments(parser: argparse.ArgumentParser, *, server: bool = True) -> None:
    """``--config``, ``--db`` and (optionally) ``--server``/``--token`` options."""
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (or CADENZA_CONFIG)")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (sqlite:///path or postgresql://…; default: the dev SQLite file)",
    )
    if server:
        parser.add_argument(
            "--server",
            metavar="URL",
            default=os.environ.get("CADENZA_SERVER"),
            help="talk to a running server over HTTP instead (or CADENZA_SERVER)",
        )
        parser.add_argument(
            "--token",
            default=os.environ.get("CADENZA_TOKEN", ""),
            help="the server's worker token (or CADENZA_TOKEN)",
        )
    parser.add_argument("--namespace", default=None, help="namespace (default: 'default')")


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Layered settings with the command line on top."""
    values = {"database_url": getattr(args, "db", None), **overrides}
    if getattr(args, "namespace", None):
        values["namespace"] = args.namespace
    return load_settings(getattr(args, "config", None), overrides=values)


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file so that a first ``cadenza dev`` just works."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)


@contextlib.asynccontextmanager
async def service_for(args: argparse.Namespace) -> AsyncIterator[tuple[Any, str]]:
    """The service a command talks to, and the namespace: a server over HTTP with
    ``--server``, else a read-mostly engine on the database (it takes no shards, so commands
    that write must use ``--server`` while a server runs)."""
    settings = settings_from(args)
    if getattr(args, "server", None):
        from cadenza.frontend.remote import RemoteService

        service = RemoteService(args.server, token=getattr(args, "token", ""))
        try:
            yield service, settings.namespace
        finally:
            await service.close()
        return
    _require_database(settings.database_url)
    engine = Engine(settings)
    await engine.start(take_shards=not getattr(args, "read_only", True))
    try:
        yield engine, settings.namespace
    finally:
        await engine.stop()


def _require_database(url: str) -> None:
    missing = url.startswith("sqlite:///") and ":memory:" not in url
    if missing and not Path(url[len("sqlite:///") :]).expanduser().exists():
        raise CliError(f"no database at {url}; start `cadenza dev` first or pass --db/--server")


def load_definitions(modules: list[str]) -> tuple[list[type], list[Callable[..., Any]]]:
    """Import modules (dotted names or ``.py`` paths) and collect their workflows and
    activities."""
    workflows: list[type] = []
    activities: list[Callable[..., Any]] = []
    for name in modules:
        module = _import(name)
        for _, value in inspect.getmembers(module):
            is_workflow = inspect.isclass(value) and "__cadenza_workflow_definition__" in vars(
                value
            )
            if is_workflow and value not in workflows:
                workflows.append(value)
            is_activity = not is_workflow and hasattr(value, "__cadenza_activity_definition__")
            if is_activity and value not in activities:
                activities.append(value)
        if not any(w.__module__ == module.__name__ for w in workflows) and not any(
            getattr(a, "__module__", None) == module.__name__ for a in activities
        ):
            logging.getLogger("cadenza.cli").warning(
                "module %s defines no @workflow.defn class and no @activity.defn function", name
            )
    return workflows, activities


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name:
        path = Path(name).resolve()
        if not path.exists():
            raise CliError(f"--module {name}: file not found")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise CliError(f"--module {name}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise CliError(f"--module {name}: {exc}") from None


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (production logging)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Text logs for people, JSON logs for production (``log_format = "json"``)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        raise InvalidArgumentError("log_level", f"unknown level {settings.log_level!r}")
    root.setLevel(level)
    from cadenza.engine._variables import install_masking_filter

    install_masking_filter()  # secret values never reach a log line
