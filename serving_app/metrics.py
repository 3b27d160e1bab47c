"""The serving path's own Prometheus metrics, exported through Ray's metrics endpoint.

Ray prefixes every application metric with ``ray_`` and gives counters a ``_total`` suffix, so the
names scraped from a Ray node's metrics port are:

- ``ray_modelfleet_requests_total{model, endpoint, code}``: requests answered, by endpoint
  (``unified``: the fleet's one endpoint; ``prefix``: under ``/<model>``; ``infer``: ``/v1/infer``)
  and HTTP status. ``model`` is empty when the request never named a known model (401, 404).
- ``ray_modelfleet_time_to_first_token_seconds{model, endpoint}``: streamed responses, from the
  request's arrival to the first body bytes.
- ``ray_modelfleet_requests_waiting{model, endpoint}``: requests sent to a model that have no
  response bytes yet. While a model wakes from zero this is the number of requests waiting for it.
- ``ray_modelfleet_router_errors_total{endpoint, reason}``: requests the ingress answered itself with
  an error (``unauthorized``, ``bad_request``, ``unknown_model``, ``overloaded``, ``internal``).
- ``ray_modelfleet_wakes_total{model}`` and ``ray_modelfleet_wake_duration_seconds{model}``: see
  ``serving_app.autoscaling``.

One middleware measures every front door: the router and the per-model ingress (standard mode)
and the model server's own app (high-throughput mode, where HAProxy also sends it the fleet endpoint's
requests naming the model, marked with ROUTED_HEADER). Metric objects are created once per process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache

from ray.util import metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelfleet_contract.wire import INFER, ROUTED_HEADER, ROUTED_VALUE

# Latency buckets (seconds) for time to first token: sub-10 ms on a warm GPU up to a wake from zero.
TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
INFER_PATH = INFER
# HAProxy's mark on a request to the fleet's endpoint it sent straight to the model's server (high-throughput
# mode, serving_app/haproxy.py): counted as `unified` there, where it arrived.
ROUTED = (ROUTED_HEADER.encode(), ROUTED_VALUE.encode())
# The `code` of a request whose client left before any answer (nginx's convention).
CLIENT_CLOSED = 499
# Why the ingress itself answered with an error, by HTTP status.
ERROR_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    404: "unknown_model",
    408: "slow_client",
    413: "too_large",
    422: "bad_request",
    503: "overloaded",
}


@dataclass
class _Metrics:
    requests: metrics.Counter
    ttft: metrics.Histogram
    waiting: metrics.Gauge
    router_errors: metrics.Counter


@cache
def _metrics() -> _Metrics:
    return _Metrics(
        requests=metrics.Counter(
            "modelfleet_requests",
            description="Requests answered, by model, endpoint (unified, prefix, infer) and HTTP status.",
            tag_keys=("model", "endpoint", "code"),
        ),
        ttft=metrics.Histogram(
            "modelfleet_time_to_first_token_seconds",
            description="Streamed requests: seconds from arrival to the first response bytes.",
            boundaries=TTFT_BUCKETS,
            tag_keys=("model", "endpoint"),
        ),
        waiting=metrics.Gauge(
            "modelfleet_requests_waiting",
            description="Requests sent to a model with no response bytes yet (queued, waking, prefill).",
            tag_keys=("model", "endpoint"),
        ),
        router_errors=metrics.Counter(
            "modelfleet_router_errors",
            description="Requests the ingress answered itself with an error, by reason.",
            tag_keys=("endpoint", "reason"),
        ),
    )


class _Waiting:
    """Per-process count of requests waiting for their first bytes, mirrored into the gauge."""

    def __init__(self) -> None:
        self._counts: Tally[tuple[str, str]] = Tally()

    def add(self, model: str, endpoint: str, delta: int) -> None:
        key = (model, endpoint)
        self._counts[key] += delta
        _metrics().waiting.set(self._counts[key], tags={"model": model, "endpoint": endpoint})


_WAITING = _Waiting()


@dataclass
class RequestInfo:
    """What the ingress learns about the request in flight, for the middleware to label it with."""

    endpoint: str
    model: str = ""
    error: str | None = None
    waiting: bool = False  # counted in the waiting gauge (sent to the model, no response bytes yet)

    def start_waiting(self, model: str) -> None:
        self.model = model
        if not self.waiting:
            self.waiting = True
            _WAITING.add(model, self.endpoint, 1)

    def stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            _WAITING.add(self.model, self.endpoint, -1)


_current: ContextVar[RequestInfo | None] = ContextVar("modelfleet_request", default=None)


def note_model(model: str) -> None:
    """The request goes to `model` (a known model: never a client's free text, which would be an
    unbounded label value)."""
    info = _current.get()
    if info is not None:
        info.start_waiting(model)


def note_error(reason: str) -> None:
    """The ingress answers this request itself with an error (`reason` is a fixed word)."""
    info = _current.get()
    if info is not None and info.error is None:
        info.error = reason


def error_reason(status_code: int) -> str:
    return ERROR_REASONS.get(status_code, "internal" if status_code >= 500 else "bad_request")


class RequestMetricsMiddleware:
    """Counts, times and labels every POST (the inference calls) through one front door."""

    def __init__(self, app: ASGIApp, *, endpoint: str, model: str = "") -> None:
        self.app = app
        self.endpoint = endpoint
        self.model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        path: str = scope.get("path", "")
        routed = self.endpoint == "prefix" and ROUTED in scope.get("headers", [])
        endpoint = "unified" if routed else self.endpoint
        info = RequestInfo(endpoint="infer" if path.endswith(INFER_PATH) else endpoint)
        if self.model:  # a model's own server: the request is the model's from the start
            info.start_waiting(self.model)
        token = _current.set(info)
        code = 500
        streaming = False
        answered = False  # response bytes sent

        async def send_measured(message: Message) -> None:
            nonlocal code, streaming, answered
            if message["type"] == "http.response.start":
                code = int(message["status"])
                headers: list[tuple[bytes, bytes]] = message.get("headers", [])
                streaming = any(
                    k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers
                )
            elif message["type"] == "http.response.body" and message.get("body") and not answered:
                answered = True
                info.stop_waiting()
                if streaming and info.model:
                    _metrics().ttft.observe(
                        time.monotonic() - started, tags={"model": info.model, "endpoint": info.endpoint}
                    )
            await send(message)

        try:
            await self.app(scope, receive, send_measured)
        except asyncio.CancelledError:  # the client went away
            if not answered:
                code = CLIENT_CLOSED
            raise
        except BaseException:
            note_error("internal")
            raise
        finally:
            _current.reset(token)
            info.stop_waiting()
            m = _metrics()
            # As on the router, a request refused for its key never counts as the model's.
            model = "" if routed and code == 401 else info.model
            m.requests.inc(tags={"model": model, "endpoint": info.endpoint, "code": str(code)})
            if info.error is not None:
                m.router_errors.inc(tags={"endpoint": info.endpoint, "reason": info.error})
