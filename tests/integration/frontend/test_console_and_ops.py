"""The console's files, /healthz, /metrics, and prompt shutdown with long polls held."""

from __future__ import annotations

import asyncio
import dataclasses
import re

from aiohttp import web

from cadenza.engine import Engine
from cadenza.frontend import RemoteService, create_app
from cadenza.frontend._metrics import METRICS


async def test_console_page_and_assets(http, base_url) -> None:
    async with http.get(base_url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        html = await response.text()
    referenced = re.findall(r'(?:src|href)="(/[^"]+)"', html)
    assert "/static/console.js" in referenced and "/static/console.css" in referenced
    for path in referenced:
        async with http.get(base_url + path) as asset:
            assert asset.status == 200, path
    async with http.get(base_url + "/static/console.js") as response:
        assert "javascript" in response.content_type
        # Revalidated on every load, cheaply: a new page never runs with an old script.
        assert response.headers["Cache-Control"] == "no-cache"
        etag = response.headers["ETag"]
        script = await response.text()
    async with http.get(
        base_url + "/static/console.js", headers={"If-None-Match": etag}
    ) as response:
        assert response.status == 304
    async with http.get(base_url + "/static/%2e%2e%2f_app.py") as response:
        assert response.status in (403, 404)
    # Data is inserted as text, never as markup.
    assert "innerHTML" not in script
    for endpoint in ("/verify", "/signal", "/history", "/workflows"):
        assert endpoint in script
    async with http.get(base_url + "/static/../_app.py") as response:
        assert response.status in (403, 404)


async def test_healthz_and_metrics(http, serve, engine: Engine) -> None:
    url = await serve()
    async with http.get(url + "/healthz") as response:
        assert response.status == 200
        health = await response.json()
    assert health["status"] == "ok" and health["shards_total"] == 4
    assert health["shards_owned"] == len(engine.shards.owned()) == 4

    for _ in range(3):
        async with http.get(url + "/api/v1/workflows/unknown-id") as response:
            assert response.status == 404
    async with http.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    route = 'method="GET",route="/api/v1/workflows/{workflow_id}",status="404"'
    assert f"cadenza_http_requests_total{{{route}}} 3.0" in text
    assert (
        'cadenza_http_request_duration_seconds_count{method="GET",route="/api/v1/workflows/{workflow_id}"} 3.0'
        in text
    )
    assert "cadenza_engine_up 1.0" in text
    assert "cadenza_engine_shards_owned 4.0" in text
    assert "cadenza_engine_shards_total 4.0" in text
    assert "cadenza_engine_tasks_in_flight 0.0" in text
    # Raw paths never become labels.
    assert "unknown-id" not in text


async def test_healthz_reports_an_engine_that_does_not_run(http, tmp_path) -> None:
    from aiohttp.test_utils import TestServer

    from cadenza.engine import Settings

    engine = Engine(Settings(database_url=f"sqlite:///{tmp_path}/h.db", shard_count=2))
    try:
        async with (
            TestServer(create_app(engine, engine.settings), host="127.0.0.1") as server,
            http.get(server.make_url("/healthz")) as response,
        ):
            assert response.status == 503
            assert (await response.json())["status"] == "unavailable"
    finally:
        await engine.stop()


async def test_shutdown_does_not_wait_for_held_polls(engine: Engine, until) -> None:
    settings = dataclasses.replace(engine.settings, poll_timeout=60.0)
    app = create_app(engine, settings)
    runner = web.AppRunner(app, shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with RemoteService(
        f"http://127.0.0.1:{port}", request_timeout=70, poll_timeout=60
    ) as svc:
        poll = asyncio.create_task(svc.poll_activity_task("default", "idle-queue", "w", timeout=60))
        registry = app[METRICS].registry
        await until(
            lambda: registry.get_sample_value("cadenza_http_long_polls", {"kind": "activity"}) == 1
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        await runner.cleanup()
        assert loop.time() - began < 10
        assert await asyncio.wait_for(poll, 10) is None
