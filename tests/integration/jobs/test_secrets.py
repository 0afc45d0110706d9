"""Variables and secrets (SQLite and PostgreSQL): a secret's value appears in no event, no log
line and no export; masked views; run-time resolution for local and remote workers; key
rotation."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from cadenza.activities import defn
from cadenza.engine import Settings
from cadenza.engine._job_contract import JOB_TASK_QUEUE
from cadenza.engine._jobs import ActivityRef
from cadenza.engine._secrets import MASK, SecretBox
from cadenza.engine._variables import VariableService, masking_filter
from cadenza.frontend import create_app
from cadenza.frontend.remote import RemoteService
from cadenza.history import InvalidArgumentError, NotFoundError, event_to_json
from cadenza.sdk import Client, Worker
from cadenza.sdk._job_interpreter import job_activities

API_TOKEN = "tok-Zq9x-4711-unique"
DB_PASS = "pw-Kk2-8123-unique"
SECRETS = (API_TOKEN, DB_PASS)

log = logging.getLogger("tests.jobs.user_activity")


@defn(name="log_config")
async def log_config(config: Any) -> dict[str, Any]:
    """A careless user activity: it logs its configuration and returns it."""
    log.warning("running with %s", config)
    return {"seen": config}


LEAKY = """
name: leaky
variables:
  DB_PASS: {secret: true, value: "@TOKEN"}
  API_TOKEN: {secret: true, description: the partner's API token}
steps:
  - id: call
    type: http
    config:
      url: "@URL/echo?token=${API_TOKEN}"
      method: POST
      headers: {Authorization: "Bearer ${API_TOKEN}"}
      json: {password: "${DB_PASS}", note: "pw=${DB_PASS}"}
  - id: reject
    type: http
    depends_on: [call]
    on_failure: continue
    config: {url: "@URL/reject", method: POST, json: {password: "${DB_PASS}"}}
  - id: careless
    type: log_config
    depends_on: [reject]
    config: {password: "${DB_PASS}", status: "{{ steps.reject.status }}"}
"""


@pytest.fixture
async def app_url(env) -> AsyncIterator[str]:
    """The frontend of the environment's engine, served on 127.0.0.1."""
    server = TestServer(create_app(env.engine), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _echo(request: web.Request, body: Any) -> web.Response:
    return web.json_response(
        {"headers": dict(request.headers), "query": dict(request.query), "body": body}
    )


async def _reject(request: web.Request, body: Any) -> web.Response:
    return web.json_response({"error": f"password {body['password']} is wrong"}, status=400)


async def test_a_secret_appears_in_no_event_no_log_line_and_no_export(
    env, jobs, parse, service, worker_for, app_url, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(masking_filter())
    await jobs.vars.set_variable("default", "API_TOKEN", API_TOKEN, secret=True, identity="t")
    token = jobs.vars.encrypt_for("job/leaky", "DB_PASS", DB_PASS)
    service.handlers["/echo"] = _echo
    service.handlers["/reject"] = _reject
    leaky = parse(
        LEAKY.replace("@URL", service.url).replace("@TOKEN", token), step_types={"log_config"}
    )
    await jobs.apply("default", leaky, identity="ci")
    async with worker_for(env, extra=[log_config]):
        started = await jobs.run_job("default", "leaky")
        handle = env.client.get_workflow_handle(started.workflow_id)
        result = await handle.result()
    # The callee got the plain values: resolution works.
    echo = service.calls("/echo")[0]
    assert echo["headers"]["Authorization"] == f"Bearer {API_TOKEN}"
    assert echo["query"]["token"] == API_TOKEN
    assert echo["body"] == {"password": DB_PASS, "note": f"pw={DB_PASS}"}
    # ... and the run saw them masked in outputs and errors.
    assert result["steps"]["call"]["output"]["body"]["body"]["password"] == MASK
    assert result["steps"]["reject"]["status"] == "failed"
    assert result["steps"]["careless"]["output"] == {"seen": {"password": MASK, "status": "failed"}}
    # No event holds a secret (the rendered inputs hold placeholders).
    history = await handle.fetch_history()
    dumped = "\n".join(str(event_to_json(e)) for e in history)
    assert "secret_ref" in dumped
    for secret in SECRETS:
        assert secret not in dumped
    # No log line (the careless activity logged its resolved config: masked).
    assert "running with" in caplog.text and MASK in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
    # No export nor API answer.
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for path in (
            f"/api/v1/workflows/{started.workflow_id.replace('/', '%2F')}/history?format=jsonl",
            "/api/v1/jobs/leaky",
            "/api/v1/variables?scope=all",
            "/api/v1/variables/API_TOKEN",
        ):
            async with http.get(app_url + path) as response:
                assert response.status == 200, path
                body = await response.text()
            for secret in SECRETS:
                assert secret not in body, path
        async with http.get(app_url + "/api/v1/variables?scope=all") as response:
            listed = {v["name"]: v for v in (await response.json())["variables"]}
    assert listed["API_TOKEN"]["value"] == MASK and listed["API_TOKEN"]["scope"] == "global"
    assert listed["DB_PASS"]["value"] == MASK and listed["DB_PASS"]["scope"] == "job/leaky"
    # At rest: only ciphertext.
    async with env.engine.store._read() as conn:
        rows = (await conn.execute(text("SELECT value FROM variables"))).fetchall()
    stored = " ".join(r[0] for r in rows)
    assert "v1:k1:" in stored and not any(s in stored for s in SECRETS)


async def test_a_remote_worker_gets_secrets_over_http(env, jobs, parse, service, app_url):
    await jobs.vars.set_variable("default", "API_TOKEN", API_TOKEN, secret=True)
    await jobs.vars.set_variable("default", "REGION", "south")
    service.handlers["/echo"] = _echo
    text_ = """
name: remote
steps:
  - id: call
    type: http
    config:
      url: "@URL/echo"
      headers: {Authorization: "Bearer ${API_TOKEN}", X-Region: "${REGION}"}
"""
    await jobs.apply("default", parse(text_.replace("@URL", service.url)), identity="ci")
    remote = Client(RemoteService(app_url))
    items = job_activities(remote)
    worker = Worker(
        remote,
        task_queue=JOB_TASK_QUEUE,
        workflows=[x for x in items if isinstance(x, type)],
        activities=[x for x in items if not isinstance(x, type)],
    )
    try:
        async with worker:
            started = await remote.service.run_job("default", "remote", identity="cli")
            result = await remote.get_workflow_handle(started.workflow_id).result()
    finally:
        await remote.close()
    assert result["status"] == "completed"
    headers = service.calls("/echo")[0]["headers"]
    assert headers["Authorization"] == f"Bearer {API_TOKEN}" and headers["X-Region"] == "south"


async def test_secrets_are_only_handed_to_a_running_step_attempt(env, jobs, parse, service):
    await jobs.vars.set_variable("default", "API_TOKEN", API_TOKEN, secret=True)
    job = parse(
        """
name: guarded
steps:
  - {id: a, type: http, config: {url: "http://127.0.0.1:9/", headers: {A: "${API_TOKEN}"}}}
"""
    )
    await jobs.apply("default", job, identity="ci")
    started = await jobs.run_job("default", "guarded")  # no worker: nothing runs
    ref = ActivityRef(
        namespace="default",
        workflow_id=started.workflow_id,
        run_id=started.run_id,
        scheduled_event_id=5,
        attempt=1,
    )
    with pytest.raises(InvalidArgumentError) as caught:
        await jobs.activity_secrets(ref)
    assert "is not running" in caught.value.reason


async def test_variables_are_masked_and_validated(env, jobs):
    view, created = await jobs.vars.set_variable(
        "default", "SMTP_PASSWORD", "hunter2", secret=True, description="relay", identity="ops"
    )
    assert created and view.value == MASK and view.secret
    view, created = await jobs.vars.set_variable("default", "LIMIT", 500)
    assert not view.secret and view.value == 500 and created
    _, created = await jobs.vars.set_variable("default", "LIMIT", 600)
    assert not created and (await jobs.vars.get_variable("default", "LIMIT")).value == 600
    assert [v.name for v in await jobs.vars.list_variables("default")] == ["LIMIT", "SMTP_PASSWORD"]
    with pytest.raises(InvalidArgumentError) as caught:
        await jobs.vars.set_variable("default", "9bad", 1)
    assert caught.value.field == "name"
    with pytest.raises(InvalidArgumentError):
        await jobs.vars.set_variable("default", "X", {"a": 1}, secret=True)
    await jobs.vars.delete_variable("default", "LIMIT")
    with pytest.raises(NotFoundError):
        await jobs.vars.get_variable("default", "LIMIT")
    without_keys = VariableService(env.engine.store, Settings())
    with pytest.raises(InvalidArgumentError) as caught:
        await without_keys.set_variable("default", "S", "x", secret=True)
    assert caught.value.field == "secret_keys"


async def test_rotate_key_re_encrypts_every_secret_once(env, jobs):
    from tests.integration.jobs.conftest import KEY, KEY_ID

    await jobs.vars.set_variable("default", "A", "alpha", secret=True)
    await jobs.vars.set_variable("other", "B", "beta", secret=True)
    await jobs.vars.set_variable("default", "PLAIN", "p")
    new_key = base64.b64encode(os.urandom(32)).decode()
    rotated_box = SecretBox({KEY_ID: KEY, "k2": new_key}, active_key_id="k2")
    service = VariableService(env.engine.store, Settings(), box=rotated_box)
    report = await service.rotate_key()
    assert sorted(report.rotated) == ["default:global/A", "other:global/B"]
    assert report.unchanged == 0 and not report.failed
    again = await service.rotate_key()
    assert again.rotated == [] and again.unchanged == 2
    records = await service.variables.list_variables(None)
    tokens = {r.name: r.value for r in records if r.secret}
    assert all(t.startswith("v1:k2:") for t in tokens.values())
    assert rotated_box.decrypt("global/A", tokens["A"]) == "alpha"
    # A tampered token is reported, never rewritten.
    record = next(r for r in records if r.name == "A")
    from dataclasses import replace

    await service.variables.put_variable(replace(record, value=tokens["B"]))
    only_new = VariableService(
        env.engine.store, Settings(), box=SecretBox({"k3": new_key, "k2": new_key}, "k3")
    )
    report = await only_new.rotate_key()
    assert [f.split(":")[0] + ":" + f.split(":")[1] for f in report.failed] == ["default:global/A"]
    assert (await service.variables.get_variable("default", "global", "A")).value == tokens["B"]
