"""Bearer token when one is configured; loopback callers only when none is."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from cadenza.frontend._middleware_auth import is_loopback, token_matches

TOKEN = "tok-ABC.123"


async def _get(http, url, headers=None) -> tuple[int, aiohttp.typedefs.LooseHeaders, str]:
    async with http.get(url, headers=headers or {}) as response:
        return response.status, response.headers, await response.text()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"bearer {TOKEN[:-1]}",
    ],
)
async def test_missing_or_wrong_token_is_401(http, serve, header) -> None:
    url = await serve(worker_token=TOKEN)
    headers = {"Authorization": header} if header is not None else {}
    for path in ("/api/v1/workflows", "/api/v1/workflows/x", "/metrics"):
        status, response_headers, text = await _get(http, url + path, headers)
        assert status == 401, (path, text)
        assert response_headers["Content-Type"].startswith("application/problem+json")
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert "bearer token" in text
    async with http.post(
        url + "/api/v1/worker/activity-tasks/poll",
        json={"task_queue": "q", "worker_id": "w"},
        headers=headers,
    ) as response:
        assert response.status == 401


async def test_right_token_is_accepted_and_public_paths_need_none(http, serve) -> None:
    url = await serve(worker_token=TOKEN)
    for scheme in ("Bearer", "bearer"):
        status, _, text = await _get(
            http, url + "/api/v1/workflows", {"Authorization": f"{scheme} {TOKEN}"}
        )
        assert status == 200, text
    status, _, _ = await _get(http, url + "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    for path in ("/", "/static/console.js", "/healthz"):
        status, _, _ = await _get(http, url + path)
        assert status == 200, path


async def test_without_a_token_loopback_callers_are_served_and_a_warning_logged(
    http, serve, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="cadenza.frontend"):
        url = await serve(worker_token="")
    assert any("no worker_token configured" in r.getMessage() for r in caplog.records)
    status, _, _ = await _get(http, url + "/api/v1/workflows")
    assert status == 200

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cadenza.frontend"):
        await serve(worker_token=TOKEN)
    assert not any("no worker_token configured" in r.getMessage() for r in caplog.records)


def test_loopback_addresses() -> None:
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "", None):
        assert is_loopback(address), address
    for address in (
        "10.0.0.5",
        "192.168.1.20",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",
        "garbage",
    ):
        assert not is_loopback(address), address


def test_token_matching() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"  bearer   {TOKEN} ", TOKEN)
    assert not token_matches(f"Bearer {TOKEN}", TOKEN + "x")
    assert not token_matches(TOKEN, TOKEN)
    assert not token_matches(None, TOKEN)
