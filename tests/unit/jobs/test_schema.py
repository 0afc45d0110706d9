"""The committed JSON Schema of job files is current and describes what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from cadenza.engine._job_schema import JOB_SCHEMA_PATH, job_json_schema, render_job_schema


def test_committed_schema_is_not_stale() -> None:
    committed = JOB_SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == render_job_schema(), (
        "schemas/job.schema.json is stale: run "
        '`python -c "from cadenza.engine._job_schema import write_job_schema; write_job_schema()"`'
    )


def test_schema_covers_both_file_shapes() -> None:
    schema = job_json_schema()
    assert schema["anyOf"] == [{"$ref": "#/$defs/JobFile"}, {"$ref": "#/$defs/JobDefinition"}]
    step = schema["$defs"]["Step"]
    assert step["additionalProperties"] is False
    assert set(step["required"]) == {"id", "type"}
    assert "as" in schema["$defs"]["ForEach"]["properties"]
    kinds = schema["$defs"]["JobDefinition"]["properties"]["schedules"]["items"]["discriminator"]
    assert set(kinds["mapping"]) == {"cron", "fixed_rate", "fixed_delay", "one_time"}


def test_documents_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(render_job_schema()))
    data = yaml.safe_load((Path(__file__).parent / "examples" / "full.yaml").read_text())
    # JSON Schema sees text, as in a JSON file.
    for schedule in data["jobs"][0]["schedules"]:
        for key in ("start", "end", "at"):
            if key in schedule:
                schedule[key] = str(schedule[key])
    assert list(validator.iter_errors(data)) == []
    single = {
        "name": "a",
        "steps": [
            {"id": "s", "type": "http", "timeout": 30, "retry": {"initial_interval": "PT5S"}}
        ],
    }
    assert list(validator.iter_errors(single)) == []
    wrong = {"name": "a", "steps": [{"id": "s", "type": "http", "retries": 3}]}
    assert list(validator.iter_errors(wrong)) != []
    bad_duration = {
        "name": "a",
        "execution_timeout": "soon",
        "steps": [{"id": "s", "type": "http"}],
    }
    assert list(validator.iter_errors(bad_duration)) != []
