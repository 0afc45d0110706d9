"""Job model helpers: dependency order, cycles, variables, secrets, retry defaults, encoding."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.engine._job_model import (
    Compensate,
    DependencyCycleError,
    ForEach,
    JobDefinition,
    JobFile,
    RetryPolicy,
    Step,
    Variable,
    find_cycle,
    topological_order,
    upstream,
)
from cadenza.history import InvalidArgumentError
from cadenza.timers._spec import CronSchedule, FixedRateSchedule


def _steps(graph: dict[str, list[str]]) -> list[Step]:
    return [Step(id=name, type="http", depends_on=deps) for name, deps in graph.items()]


def test_topological_order_respects_dependencies_and_file_order() -> None:
    steps = _steps({"mail": ["load", "audit"], "fetch": [], "audit": [], "load": ["fetch"]})
    assert [s.id for s in topological_order(steps)] == ["fetch", "audit", "load", "mail"]


def test_topological_order_is_deterministic_for_independent_steps() -> None:
    steps = _steps({"c": [], "a": [], "b": []})
    assert [s.id for s in topological_order(steps)] == ["c", "a", "b"]


def test_cycle_is_named() -> None:
    steps = _steps({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    assert find_cycle(steps) == ["a", "c", "b", "a"]
    with pytest.raises(DependencyCycleError) as info:
        topological_order(steps)
    assert info.value.cycle == ["a", "c", "b", "a"]
    assert info.value.reason == "dependency cycle: a -> c -> b -> a"
    assert isinstance(info.value, InvalidArgumentError)


def test_self_dependency_is_a_cycle() -> None:
    assert find_cycle(_steps({"a": ["a"]})) == ["a", "a"]


def test_unknown_dependencies_are_ignored_by_the_graph_helpers() -> None:
    steps = _steps({"a": ["ghost"], "b": ["a"]})
    assert find_cycle(steps) is None
    assert [s.id for s in topological_order(steps)] == ["a", "b"]
    assert upstream(steps) == {"a": frozenset(), "b": frozenset({"a"})}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 11), max_size=3), min_size=1, max_size=12))
def test_topological_order_property(edges: list[list[int]]) -> None:
    # Step i may only depend on steps with a smaller index: always acyclic.
    graph = {f"s{i}": sorted({f"s{d}" for d in deps if d < i}) for i, deps in enumerate(edges)}
    order = [s.id for s in topological_order(_steps(graph))]
    assert sorted(order) == sorted(graph)
    for step, deps in graph.items():
        assert all(order.index(dep) < order.index(step) for dep in deps)


def test_resolve_variables_job_scope_over_global_scope() -> None:
    job = JobDefinition(
        name="j",
        steps=[Step(id="a", type="http")],
        variables={
            "REGION": Variable(value="north"),
            "API_KEY": Variable(value="v1:key:nonce:ct", secret=True),
            "PUBLIC": Variable(value="now-public"),
        },
    )
    values, secrets = job.resolve_variables(
        {"REGION": "south", "SMTP": "smtp.local", "PUBLIC": "x"},
        global_secrets={"PUBLIC", "SMTP_PW"},
    )
    assert values == {
        "REGION": "north",
        "SMTP": "smtp.local",
        "PUBLIC": "now-public",
        "API_KEY": "v1:key:nonce:ct",
    }
    assert secrets == frozenset({"API_KEY", "SMTP_PW"})


def test_without_secret_values_strips_only_secrets() -> None:
    job = JobDefinition(
        name="j",
        steps=[Step(id="a", type="http")],
        variables={"K": Variable(value="token", secret=True), "N": Variable(value=3)},
    )
    clean = job.without_secret_values()
    assert clean.variables == {"K": Variable(secret=True), "N": Variable(value=3)}
    assert b"token" not in msgspec.json.encode(clean)
    assert clean.without_secret_values() is clean


def test_retry_defaults_and_step_override() -> None:
    custom = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10))
    job = JobDefinition(
        name="j", steps=[Step(id="a", type="http"), Step(id="b", type="http", retry=custom)]
    )
    assert job.retry_for(job.step("a")) == RetryPolicy()
    assert job.retry_for(job.step("b")) is custom
    assert RetryPolicy().effective_maximum_interval == timedelta(seconds=100)
    assert custom.effective_maximum_interval == timedelta(seconds=1000)
    with pytest.raises(KeyError):
        job.step("zzz")
    problems = RetryPolicy(
        initial_interval=timedelta(0), maximum_interval=timedelta(seconds=-1)
    ).errors()
    assert [p.field for p in problems] == ["initial_interval", "maximum_interval"]


def test_compensation_and_schedule_ids() -> None:
    job = JobDefinition(
        name="pay",
        schedules=[
            CronSchedule(cron="@daily", id="daily"),
            FixedRateSchedule(every=timedelta(hours=1)),
        ],
        steps=[
            Step(id="charge", type="http", on_failure=Compensate(compensate="refund")),
            Step(id="refund", type="http"),
        ],
    )
    assert job.compensation_step_ids() == frozenset({"refund"})
    assert job.step("charge").compensation_step == "refund"
    assert job.step("refund").compensation_step is None
    assert [job.schedule_id(i) for i in range(2)] == ["pay/daily", "pay/1"]


def test_job_file_json_round_trip() -> None:
    job = JobDefinition(
        name="j",
        schedules=[CronSchedule(cron="0 0 2 * * ?")],
        execution_timeout=timedelta(hours=2),
        steps=[
            Step(
                id="each",
                type="sftp",
                config={"path": "{{ item }}"},
                for_each=ForEach(items=["a", "b"], concurrency=2, item_var="file"),
                on_failure="continue",
                timeout=timedelta(minutes=5),
            )
        ],
    )
    encoded = msgspec.json.encode(JobFile(jobs=[job]))
    assert b'"as":"file"' in encoded
    assert msgspec.json.decode(encoded, type=JobFile) == JobFile(jobs=[job])
    assert job.step("each").for_each.index_var == "file_index"
