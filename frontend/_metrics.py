"""``/metrics`` (Prometheus text format), ``/healthz``, and the middleware that counts requests.

Each app has its own :class:`prometheus_client.CollectorRegistry` (several apps in one process —
tests, a server and a dev console — never collide). It holds:

* ``cadenza_http_requests_total{method,route,status}`` and
  ``cadenza_http_request_duration_seconds{method,route}``; ``route`` is the route's pattern
  (``/api/v1/workflows/{workflow_id}``), never the raw path, so ids do not explode the series.
  Long polls are counted like other requests: their latency is the time they waited.
* ``cadenza_http_long_polls{kind}``: worker long polls being held right now.
* engine gauges read at scrape time from cheap in-memory state: ``cadenza_engine_up``,
  ``cadenza_engine_shards_owned``, ``cadenza_engine_shards_total``,
  ``cadenza_engine_tasks_in_flight``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cadenza.engine import Engine
from cadenza.frontend._state import ENGINE, json_response

routes = web.RouteTableDef()

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _EngineCollector:
    """Engine gauges, read when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        up = engine.started and not engine.stopping and engine.failure is None
        yield GaugeMetricFamily(
            "cadenza_engine_up", "1 while the engine runs, 0 once stopped or failed", value=int(up)
        )
        owned = len(engine.shards.owned()) if engine.shards is not None else 0
        yield GaugeMetricFamily(
            "cadenza_engine_shards_owned", "Shards whose lease this process holds", value=owned
        )
        yield GaugeMetricFamily(
            "cadenza_engine_shards_total", "Shards of the cluster", value=engine.shard_count
        )
        yield GaugeMetricFamily(
            "cadenza_engine_tasks_in_flight",
            "Workflow and activity tasks handed to workers and not yet answered",
            value=engine.inflight_tasks,
        )


class Metrics:
    """The metrics of one app.

    Attributes:
        registry: The registry ``/metrics`` exposes.
        requests: Requests by method, route pattern and status.
        latency: Request duration by method and route pattern.
        long_polls: Worker long polls held now, by kind (``workflow``, ``activity``,
            ``result``).
        forwards: Requests, and batches of a batch route, sent on to the server that owns
            their shard, by route pattern (clients that send writes to the owners keep it
            near zero).
    """

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cadenza_http_requests",
            "HTTP requests answered",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "cadenza_http_request_duration_seconds",
            "Time to answer an HTTP request (long polls include their wait)",
            ("method", "route"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.long_polls = Gauge(
            "cadenza_http_long_polls",
            "Long polls being held",
            ("kind",),
            registry=self.registry,
        )
        self.forwards = Counter(
            "cadenza_http_forwards",
            "Requests and batches sent on to the server that owns their shard",
            ("route",),
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine))  # type: ignore[arg-type]

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


METRICS = web.AppKey("cadenza_metrics", Metrics)
"""The app's :class:`Metrics`."""


def route_of(request: web.Request) -> str:
    """The route pattern a request matched (``unmatched`` for none)."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Count every request and time it, labelled by route pattern."""
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = route_of(request)
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 while the engine runs (with the shards it owns), 503 once it stopped or failed."""
    engine = request.app[ENGINE]
    up = engine.started and not engine.stopping and engine.failure is None
    owned = len(engine.shards.owned()) if engine.shards is not None else 0
    body = {
        "status": "ok" if up else "unavailable",
        "engine": engine.owner,
        "shards_owned": owned,
        "shards_total": engine.shard_count,
    }
    if engine.failure is not None:
        body["failure"] = repr(engine.failure)
    return json_response(body, status=200 if up else 503)
