"""The complete job examples of docs/jobs.md load without a problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cadenza.engine._job_loader import load_job_text

DOC = Path(__file__).resolve().parents[3] / "docs" / "jobs.md"
BLOCKS = re.findall(r"```(yaml|json|toml)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
# Complete documents: a job (`name` at the top level) and not an elided fragment.
COMPLETE = [
    (fmt, text)
    for fmt, text in BLOCKS
    if "[...]" not in text and re.search(r"^(name\s*[:=]|\{\s*$)", text, re.M)
]


def test_the_reference_has_complete_examples_in_every_format() -> None:
    assert {fmt for fmt, _ in COMPLETE} == {"yaml", "json", "toml"}
    assert len(COMPLETE) >= 4


@pytest.mark.parametrize(("fmt", "text"), COMPLETE)
def test_documented_job_loads(fmt: str, text: str) -> None:
    loaded = load_job_text(text, format=fmt, filename=f"doc.{fmt}")  # type: ignore[arg-type]
    assert [str(issue) for issue in loaded.issues] == []
    assert loaded.jobs


def test_documented_step_lists_load() -> None:
    fragments = [t for f, t in BLOCKS if f == "yaml" and t.startswith("steps:")]
    assert fragments
    for text in fragments:
        loaded = load_job_text(
            "name: doc\n" + text, filename="doc.yaml", step_types={"partner_archive", "reconcile"}
        )
        assert [str(issue) for issue in loaded.issues] == []
