"""The JSON Schema of job files, generated from the msgspec structs.

``schemas/job.schema.json`` is committed so that editors and CI can validate job files without
Cadenza installed. Regenerate it after changing the model::

    python -c "from cadenza.engine._job_schema import write_job_schema; write_job_schema()"

A unit test fails when the committed file differs from what :func:`job_json_schema` produces.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import msgspec

from cadenza.engine._job_model import JobDefinition, JobFile, Variable

__all__ = ["JOB_SCHEMA_PATH", "job_json_schema", "render_job_schema", "write_job_schema"]


def _schemas_dir() -> Path:
    import cadenza.schemas

    return Path(cadenza.schemas.__file__).resolve().parent


JOB_SCHEMA_PATH = _schemas_dir() / "job.schema.json"
"""Where the committed schema lives (``schemas/job.schema.json``)."""

_HUMAN_DURATION = r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$"
_NUM = r"\d+(?:[.,]\d+)?"
_ISO_DURATION = rf"^P(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$"


def _human_duration(iso: str) -> str:
    from cadenza.timers._spec import format_duration, parse_duration

    return format_duration(parse_duration(iso))


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-cadenza-duration"):
        out: dict[str, Any] = {
            "description": node.get("description", ""),
            "anyOf": [
                {"type": "string", "pattern": _HUMAN_DURATION},
                {"type": "string", "pattern": _ISO_DURATION},
                {"type": "number", "minimum": 0},
            ],
        }
        if "default" in node:
            out["default"] = _human_duration(node["default"])
        return out
    out = {key: _rewrite(value) for key, value in node.items()}
    if isinstance(out.get("description"), str):
        # Python 3.13 strips docstring indentation at compile time; make every version agree.
        out["description"] = inspect.cleandoc(out["description"])
    if "default" in out and isinstance(out["default"], str) and "anyOf" in out:
        durations = [m for m in out["anyOf"] if isinstance(m, dict) and "anyOf" in m]
        if durations and out["default"].startswith("P"):
            out["default"] = _human_duration(out["default"])
    return out


def job_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job file: one job, or ``{"jobs": [...]}``."""
    (file_ref, job_ref), components = msgspec.json.schema_components(
        [JobFile, JobDefinition], ref_template="#/$defs/{name}"
    )
    defs = _rewrite(components)
    variable_ref = {"$ref": f"#/$defs/{Variable.__name__}"}
    job = defs[JobDefinition.__name__]
    job["properties"]["variables"]["additionalProperties"] = {
        "description": "A plain value, or the long form {value, secret, description}.",
        "anyOf": [variable_ref, {"not": {"type": "object"}}, {"type": "object"}],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Cadenza job file",
        "description": (
            "One job (its fields at the top level) or several under 'jobs'. "
            "Reference: docs/jobs.md."
        ),
        "anyOf": [file_ref, job_ref],
        "$defs": defs,
    }


def render_job_schema() -> str:
    """The schema as the committed text (2-space indented JSON, trailing newline)."""
    return json.dumps(job_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_job_schema(path: Path | None = None) -> Path:
    """Write the schema to ``path`` (default ``schemas/job.schema.json``); return the path."""
    target = path or JOB_SCHEMA_PATH
    target.write_text(render_job_schema(), encoding="utf-8")
    return target
