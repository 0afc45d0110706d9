"""Plan diffs, canonical definitions and the secret keyring setting (no database)."""

from __future__ import annotations

import base64
import os

import pytest

from cadenza.engine import Settings
from cadenza.engine._job_loader import load_job_text
from cadenza.engine._job_plan import (
    JobChange,
    JobPlan,
    SchedulePlan,
    canonical_definition,
    content_hash,
    diff_values,
    secret_changes,
)
from cadenza.engine._jobs import secret_names_in
from cadenza.engine._secrets import MASK
from cadenza.engine._variables import secret_box_from
from cadenza.history import InvalidArgumentError
from cadenza.sdk._job_interpreter import referenced_variables


def job(text: str):
    loaded = load_job_text(text, filename="t.yaml")
    assert loaded.ok, [str(i) for i in loaded.issues]
    return loaded.jobs[0]


def test_steps_are_matched_by_id_not_position() -> None:
    old = {"steps": [{"id": "a", "timeout": 1}, {"id": "b"}]}
    new = {"steps": [{"id": "x"}, {"id": "a", "timeout": 2}, {"id": "b"}]}
    changes = {c.path: c for c in diff_values(old, new)}
    assert changes["steps[a].timeout"].old == 1 and changes["steps[a].timeout"].new == 2
    assert changes["steps[x]"].kind == "added"
    assert set(changes) == {"steps[a].timeout", "steps[x]"}
    swapped = {c.path: c for c in diff_values(old, {"steps": [{"id": "b"}, old["steps"][0]]})}
    assert swapped["steps (order)"].old == ["a", "b"] and swapped["steps (order)"].new == ["b", "a"]


def test_scalars_lists_and_types() -> None:
    assert list(diff_values({"a": 1}, {"a": 1})) == []
    assert [c.path for c in diff_values({"a": 1}, {"a": True})] == ["a"]  # 1 is not true
    assert [(c.path, c.kind) for c in diff_values({"t": ["x"]}, {"t": ["x", "y"]})] == [
        ("t", "changed")
    ]
    assert [(c.path, c.kind) for c in diff_values({"a": 1}, {})] == [("a", "removed")]
    assert [c.path for c in diff_values({}, {"weird key": 1})] == ['["weird key"]']


def test_canonical_definition_removes_secret_values_and_is_stable() -> None:
    text = """
name: j
variables:
  A: 1
  S: {secret: true, value: "v1:k:abc:def"}
steps:
  - {id: s, type: http, config: {b: 1, a: 2}}
"""
    one = canonical_definition(job(text))
    assert "v1:k:abc:def" not in one and '"secret":true' in one
    assert one == canonical_definition(job(text.replace("{b: 1, a: 2}", "{a: 2, b: 1}")))
    assert content_hash(one).startswith("sha256:") and len(content_hash(one)) == 71


def test_secret_changes_compare_plain_values_and_show_masks() -> None:
    changes = secret_changes({"A": "x", "B": "y"}, {"A": "x", "B": "z", "C": "w"})
    assert [(c.path, c.kind, c.old, c.new) for c in changes] == [
        ("variables.B.value", "changed", MASK, MASK),
        ("variables.C.value", "added", None, MASK),
    ]


def test_render_of_a_plan() -> None:
    plan = JobPlan(
        namespace="default",
        jobs=[
            JobChange(name="a", action="create", steps=2, schedules=1),
            JobChange(name="b", action="unchanged", version=3),
        ],
        unmanaged=["old"],
        schedules=[SchedulePlan(schedule_id="a/nightly", job="a", action="create")],
    )
    text = plan.render()
    assert "+ job a: create (2 steps, 1 schedule)" in text
    assert "+ schedule a/nightly: create" in text
    assert "job old: not in the files (kept; --prune deletes it)" in text
    assert text.endswith("1 to create, 0 to change, 0 to delete, 1 unchanged; 1 schedule to sync")
    quiet = JobPlan(namespace="default", jobs=[JobChange(name="b", action="unchanged")])
    assert not quiet.has_changes and quiet.render() == "no changes (1 job up to date)"


def test_referenced_global_variables_and_secret_placeholders() -> None:
    definition = job(
        """
name: j
variables: {LOCAL: 1}
steps:
  - id: s
    type: http
    when: "${FLAG} == true"
    for_each: {items: "${ITEMS}"}
    config: {url: "${BASE}/{{ item }}", n: "${LOCAL}"}
"""
    )
    assert referenced_variables(definition) == ["BASE", "FLAG", "ITEMS"]
    rendered = {
        "a": {"kind": "secret_ref", "name": "X"},
        "b": [{"kind": "secret_string", "parts": ["Bearer ", {"kind": "secret_ref", "name": "Y"}]}],
        "c": {"kind": "other", "name": "Z"},
    }
    assert secret_names_in(rendered) == {"X", "Y"}


def test_secret_keyring_setting() -> None:
    key1 = base64.b64encode(os.urandom(32)).decode()
    key2 = base64.b64encode(os.urandom(32)).decode()
    assert secret_box_from(Settings()) is None
    box = secret_box_from(Settings(secret_keys=f"k1:{key1}"))
    assert box is not None and box.active_key_id == "k1"
    box = secret_box_from(Settings(secret_keys=f"old:{key1}, new:{key2}", active_secret_key="new"))
    assert box is not None and box.key_ids == {"old", "new"} and box.active_key_id == "new"
    with pytest.raises(InvalidArgumentError) as caught:
        secret_box_from(Settings(secret_keys=f"old:{key1},new:{key2}"))
    assert caught.value.field == "active_secret_key"
    with pytest.raises(InvalidArgumentError) as caught:
        secret_box_from(Settings(secret_keys=key1))
    assert caught.value.field == "secret_keys" and key1 not in str(caught.value)
    with pytest.raises(InvalidArgumentError) as caught:
        secret_box_from(Settings(secret_keys="k1:c2hvcnQ="))
    assert caught.value.field.startswith("secret_keys")
    assert key1 not in repr(Settings(secret_keys=f"k1:{key1}"))
