"""``cadenza plan|apply|job|vars|secrets`` against an embedded engine (``--db``) and against a
server (``--server``)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine._secrets import MASK
from cadenza.frontend import create_app
from cadenza.frontend.cli import main
from tests.integration.jobs.conftest import KEY, KEY_ID

JOB = """
name: greet
description: Says hello.
triggers: [manual]
steps:
  - id: hello
    type: http
    config:
      url: "@URL/hello"
      method: POST
      headers: {Authorization: "Bearer ${TOKEN}"}
      json: {who: "{{ trigger.payload.who | default('world') }}", limit: "${LIMIT}"}
"""


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the ``cadenza`` command in a thread (it runs its own event loop)."""
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_SECRET_KEYS", f"{KEY_ID}:{KEY}")


@pytest.fixture
def files(tmp_path: Path, service) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "greet.yaml").write_text(JOB.replace("@URL", service.url))
    (folder / "other.yaml").write_text(
        "name: other\nsteps:\n  - {id: a, type: http, config: {url: http://127.0.0.1:9/}}\n"
    )
    return folder


async def test_apply_plan_prune_and_run_on_a_database(tmp_path, files, service, capsys, keyring):
    db = ["--db", f"sqlite:///{tmp_path}/cli.db"]
    status, out, _ = await cli(capsys, "plan", str(files), *db)
    assert status == 0 and "+ job greet: create (1 step, 0 schedules)" in out
    status, out, _ = await cli(capsys, "apply", str(files), *db, "--identity", "ci@build-7")
    assert status == 0
    assert "applied greet version 1" in out and "applied other version 1" in out
    status, out, _ = await cli(capsys, "apply", str(files), *db)
    assert status == 0 and "no changes (2 jobs up to date)" in out

    # All or nothing: one invalid file, nothing changes, exit 1 with FILE:LINE messages.
    (files / "greet.yaml").write_text(
        JOB.replace("@URL", service.url).replace("hello\n", "hello\n    retries: 3\n", 1)
    )
    (files / "broken.yaml").write_text("name: broken\nsteps:\n  - {id: a, type: nope}\n")
    status, _, err = await cli(capsys, "apply", str(files), *db, "--prune")
    assert status == 1
    assert re.search(r"broken\.yaml:3: steps\[0\]\.type: unknown step type 'nope'", err)
    assert "greet.yaml:" in err and "nothing changed" in err
    (files / "broken.yaml").unlink()
    (files / "greet.yaml").write_text(JOB.replace("@URL", service.url))
    (files / "other.yaml").unlink()
    status, out, _ = await cli(capsys, "plan", str(files), *db, "--prune")
    assert "- job other: delete (version 1, 0 schedules)" in out

    status, out, _ = await cli(capsys, "job", "list", *db)
    assert status == 0 and "greet" in out and "other" in out  # plan changed nothing
    status, out, _ = await cli(capsys, "job", "show", "greet", *db)
    assert "v1 created" in out and "by ci@build-7" in out

    assert (await cli(capsys, "vars", "set", "LIMIT", "500", *db))[0] == 0
    status, out, _ = await cli(capsys, "vars", "set", "TOKEN", "s3cr3t-v4lue", "--secret", *db)
    assert status == 0 and "s3cr3t-v4lue" not in out and MASK in out
    status, out, _ = await cli(capsys, "vars", "list", *db)
    assert "LIMIT = 500" in out and f"TOKEN = {MASK} (secret)" in out
    assert "s3cr3t-v4lue" not in out

    status, out, err = await cli(
        capsys, "job", "run", "greet", "--input", '{"who": "Hanoi"}', "--wait", *db
    )
    assert status == 0, err
    assert '"status": "completed"' in out
    call = service.calls("/hello")[0]
    assert call["body"] == {"who": "Hanoi", "limit": 500}
    assert call["headers"]["Authorization"] == "Bearer s3cr3t-v4lue"
    assert "s3cr3t-v4lue" not in out

    status, out, _ = await cli(capsys, "secrets", "rotate-key", *db)
    assert status == 0 and "0 rotated, 1 already current" in out
    status, out, _ = await cli(
        capsys, "secrets", "encrypt", "PASSWORD", "pw", "--job", "greet", *db
    )
    assert status == 0 and out.startswith(f"v1:{KEY_ID}:")
    status, out, _ = await cli(capsys, "secrets", "new-key", "--id", "2026-01")
    assert re.fullmatch(r"2026-01:[A-Za-z0-9+/]{43}=\n", out)


@pytest.fixture
async def server_url(env) -> AsyncIterator[str]:
    server = TestServer(create_app(env.engine), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_the_same_commands_against_a_server(
    env, files, service, capsys, server_url, worker_for, monkeypatch
):
    remote = ["--server", server_url]
    status, out, err = await cli(capsys, "apply", str(files), *remote, "--identity", "ops")
    assert status == 0, err
    assert "applied greet version 1" in out
    assert (await cli(capsys, "vars", "set", "LIMIT", "7", *remote))[0] == 0
    # '-' reads the secret from standard input (kept out of the shell history).
    monkeypatch.setattr("cadenza.frontend.cli.cmd_vars.read_stdin_line", lambda: "tok-99")
    status, out, _ = await cli(capsys, "vars", "set", "TOKEN", "-", "--secret", *remote)
    assert status == 0 and MASK in out and "tok-99" not in out
    status, out, _ = await cli(capsys, "vars", "get", "TOKEN", *remote)
    assert out.strip() == f"TOKEN = {MASK} (secret)"
    async with worker_for(env):
        status, out, err = await cli(capsys, "job", "run", "greet", "--wait", *remote)
    assert status == 0, err
    call = service.calls("/hello")[0]
    assert call["body"] == {"who": "world", "limit": 7}
    assert call["headers"]["Authorization"] == "Bearer tok-99"
    status, out, _ = await cli(capsys, "job", "show", "greet", *remote, "--json")
    assert '"applied_by": "ops"' in out
    status, _, err = await cli(capsys, "job", "run", "nope", *remote)
    assert status == 1 and "no job 'nope'" in err
    status, out, _ = await cli(capsys, "apply", str(files), *remote)
    assert "no changes" in out
    status, out, _ = await cli(capsys, "vars", "delete", "LIMIT", *remote)
    assert status == 0
    status, _, err = await cli(capsys, "vars", "get", "LIMIT", *remote)
    assert status == 1 and "no global variable 'LIMIT'" in err


async def test_webhook_starts_one_run_per_delivery(
    env, jobs, parse, service, server_url, worker_for
):
    import aiohttp

    text = """
name: hooked
triggers: [webhook]
steps:
  - {id: a, type: http, config: {url: "@URL/hook", method: POST, json: "{{ trigger.payload }}"}}
"""
    await jobs.apply("default", parse(text.replace("@URL", service.url)), identity="t")
    url = f"{server_url}/api/v1/jobs/hooked/webhook"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        headers = {"Idempotency-Key": "delivery-1"}
        async with http.post(url, json={"order": 9}, headers=headers) as response:
            assert response.status == 201
            first = await response.json()
        async with http.post(url, json={"order": 9}, headers=headers) as response:
            assert response.status == 200  # the same delivery again: the same run
            assert (await response.json())["run_id"] == first["run_id"]
        async with http.post(f"{server_url}/api/v1/jobs/hooked/runs", json={}) as response:
            assert response.status == 400
            assert "does not allow manual runs" in (await response.json())["detail"]
    async with worker_for(env):
        result = await env.client.get_workflow_handle(first["workflow_id"]).result()
    assert result["status"] == "completed"
    assert service.calls("/hook")[0]["body"] == {"order": 9}
