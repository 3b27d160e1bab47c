"""The serving metrics' bookkeeping, without Ray: which series a request moves, and when a wake counts.

The numbers a real fleet exports are checked in tests/serving/test_metrics.py; these cases pin the labels
and edge cases (refused, unknown model, streaming vs not, client gone, a wake that never finishes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingConfig, AutoscalingContext
from starlette.testclient import TestClient

from modelfleet_contract.args import FrontDoorArgs
from serving_app import metrics
from serving_app.auth import API_KEYS_DIR_ENV
from serving_app.autoscaling import FleetAutoscalingPolicy
from serving_app.engine import AUTOSCALING_POLICY
from serving_app.errors import FleetHTTPError, handle_fleet_error
from serving_app.frontdoor import add_front_door


@dataclass
class Recorded:
    """Stands in for one ray.util.metrics object; keeps what was recorded, by tags."""

    values: dict[tuple[tuple[str, str], ...], list[float]] = field(default_factory=dict)

    def _add(self, value: float, tags: dict[str, str]) -> None:
        self.values.setdefault(tuple(sorted(tags.items())), []).append(value)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self._add(value, tags or {})

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._add(value, tags or {})

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._add(value, tags or {})

    def get(self, **tags: str) -> list[float]:
        return self.values.get(tuple(sorted(tags.items())), [])


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> metrics._Metrics:
    fake = metrics._Metrics(
        requests=Recorded(), ttft=Recorded(), waiting=Recorded(), router_errors=Recorded()
    )  # type: ignore[arg-type]
    monkeypatch.setattr(metrics, "_metrics", lambda: fake)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k").write_text("k")
    monkeypatch.setenv(API_KEYS_DIR_ENV, str(tmp_path))
    return fake


KNOWN = {"alpha"}
FRONT_DOOR = FrontDoorArgs(
    api_keys=["keys/k"], max_request_bytes=1 << 20, max_tokens=100, max_n=2, body_timeout_s=5
)


def front_door(endpoint: str) -> FastAPI:
    """A tiny ingress shaped like ours: resolves the model, streams on request, refuses unknown models."""
    app = FastAPI()
    app.add_exception_handler(FleetHTTPError, handle_fleet_error)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if body["model"] not in KNOWN:
            raise FleetHTTPError(404, "unknown", param="model")
        metrics.note_model(body["model"])

        async def tokens() -> AsyncIterator[bytes]:
            yield b"data: one\n\n"
            yield b"data: [DONE]\n\n"

        if body.get("stream"):
            return StreamingResponse(tokens(), media_type="text/event-stream")
        return JSONResponse({"ok": True})

    add_front_door(app, FRONT_DOOR, endpoint=endpoint)
    return app


def post(client: TestClient, path: str, body: dict[str, Any], key: str = "k") -> int:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"}).status_code


def test_requests_are_counted_by_model_endpoint_and_code(recorded: metrics._Metrics) -> None:
    client = TestClient(front_door("unified"))
    assert post(client, "/v1/chat/completions", {"model": "alpha"}) == 200
    assert post(client, "/v1/chat/completions", {"model": "alpha", "stream": True}) == 200
    assert post(client, "/v1/chat/completions", {"model": "what is this"}) == 404
    assert post(client, "/v1/chat/completions", {"model": "alpha"}, key="wrong") == 401
    assert client.get("/healthz").status_code == 404  # GETs are not inference: not counted
    requests = recorded.requests
    assert len(requests.get(model="alpha", endpoint="unified", code="200")) == 2
    # A client's unknown model name never becomes a label value (unbounded cardinality).
    assert len(requests.get(model="", endpoint="unified", code="404")) == 1
    assert len(requests.get(model="", endpoint="unified", code="401")) == 1
    assert sum(len(v) for v in requests.values.values()) == 4
    errors = recorded.router_errors
    assert len(errors.get(endpoint="unified", reason="unknown_model")) == 1
    assert len(errors.get(endpoint="unified", reason="unauthorized")) == 1
    # Time to first token only for the streamed reply.
    assert len(recorded.ttft.get(model="alpha", endpoint="unified")) == 1


def test_waiting_goes_up_when_the_model_is_named_and_back_to_zero(recorded: metrics._Metrics) -> None:
    client = TestClient(front_door("prefix"))
    post(client, "/v1/chat/completions", {"model": "alpha", "stream": True})
    post(client, "/v1/chat/completions", {"model": "alpha"})
    assert recorded.waiting.get(model="alpha", endpoint="prefix") == [1, 0, 1, 0]


def test_infer_is_its_own_endpoint(recorded: metrics._Metrics) -> None:
    app = front_door("unified")

    @app.post("/v1/infer")
    async def infer() -> dict[str, str]:
        metrics.note_model("alpha")
        return {"text": "x"}

    assert post(TestClient(app), "/v1/infer", {}) == 200
    assert len(recorded.requests.get(model="alpha", endpoint="infer", code="200")) == 1


def test_a_model_server_counts_its_model_from_the_start(recorded: metrics._Metrics) -> None:
    """High-throughput mode: the model's own server is the front door; it never calls note_model."""
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions() -> StreamingResponse:
        async def tokens() -> AsyncIterator[bytes]:
            yield b"data: x\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    app.add_middleware(metrics.RequestMetricsMiddleware, endpoint="prefix", model="alpha")
    assert TestClient(app).post("/v1/completions", json={}).status_code == 200
    assert len(recorded.requests.get(model="alpha", endpoint="prefix", code="200")) == 1
    assert len(recorded.ttft.get(model="alpha", endpoint="prefix")) == 1
    assert recorded.waiting.get(model="alpha", endpoint="prefix") == [1, 0]


def test_a_request_haproxy_routed_from_the_fleets_endpoint_counts_as_the_fleet_endpoints(
    recorded: metrics._Metrics,
) -> None:
    """High-throughput mode under `modelfleet up`: HAProxy sends the fleet endpoint's requests naming a model
    to the model's own server, marked; counted there as `unified`, and a refused key as no model's (as the
    router counts them)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        authorized = request.headers.get("authorization") == "Bearer k"
        return JSONResponse({}, status_code=200 if authorized else 401)

    app.add_middleware(metrics.RequestMetricsMiddleware, endpoint="prefix", model="alpha")
    client = TestClient(app)
    routed = {metrics.ROUTED[0].decode(): metrics.ROUTED[1].decode()}
    assert client.post("/v1/chat/completions", headers={**routed, "authorization": "Bearer k"}).is_success
    assert client.post("/v1/chat/completions", headers=routed).status_code == 401
    assert client.post("/v1/chat/completions").status_code == 401  # the model's own prefix
    assert len(recorded.requests.get(model="alpha", endpoint="unified", code="200")) == 1
    assert len(recorded.requests.get(model="", endpoint="unified", code="401")) == 1
    assert len(recorded.requests.get(model="alpha", endpoint="prefix", code="401")) == 1
    assert recorded.waiting.get(model="alpha", endpoint="unified") == [1, 0, 1, 0]


def test_an_unhandled_error_is_a_500_and_a_router_error(recorded: metrics._Metrics) -> None:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def boom() -> None:
        raise RuntimeError("bug")

    app.add_middleware(metrics.RequestMetricsMiddleware, endpoint="unified")
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/v1/chat/completions", json={}).status_code == 500
    assert len(recorded.requests.get(model="", endpoint="unified", code="500")) == 1
    assert len(recorded.router_errors.get(endpoint="unified", reason="internal")) == 1


# The controller's view of one model server, tick by tick: (running replicas, target, requests).
ASLEEP, COLD_START, RUNNING = (0, 0, 0.0), (0, 1, 1.0), (1, 1, 1.0)


def tick(policy: FleetAutoscalingPolicy, at: float, state: tuple[int, int, float]) -> None:
    """One control-loop tick; Serve skips the policy on cold start (zero running, requests waiting)."""
    running, target, requests = state
    if running == 0 and requests > 0:
        return
    ctx = AutoscalingContext(
        deployment_id=None,  # type: ignore[arg-type]
        deployment_name="LLMServer:beta",
        app_name="beta",
        current_num_replicas=running,
        target_num_replicas=target,
        running_replicas=[],
        total_num_requests=requests,
        total_queued_requests=0.0,
        aggregated_metrics={},
        raw_metrics={},
        capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=1,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=at,
        config=AutoscalingConfig(min_replicas=0, max_replicas=1, target_ongoing_requests=4),
    )
    assert policy(ctx) == replica_queue_length_autoscaling_policy(ctx)  # Serve's own decision


@pytest.fixture
def policy() -> FleetAutoscalingPolicy:
    p = FleetAutoscalingPolicy()
    p._wakes, p._wake_seconds = Recorded(), Recorded()  # type: ignore[assignment]
    return p


def test_a_wake_is_timed_from_the_last_idle_tick_to_a_running_replica(policy: FleetAutoscalingPolicy) -> None:
    timeline = [(0.0, ASLEEP), (0.1, ASLEEP), (0.2, COLD_START), (30.0, COLD_START), (42.1, RUNNING)]
    timeline += [(42.2, RUNNING), (60.0, (1, 0, 0.0)), (61.0, ASLEEP)]
    for at, state in timeline:
        tick(policy, at, state)
    assert policy._wakes.get(model="beta") == [1]  # type: ignore[attr-defined]
    assert policy._wake_seconds.get(model="beta") == [pytest.approx(42.0)]  # type: ignore[attr-defined]


def test_first_start_and_scaling_between_replicas_are_not_wakes(policy: FleetAutoscalingPolicy) -> None:
    # A model deployed with one replica starts at (0 running, target 1), then runs.
    for at, state in [(0.0, (0, 1, 0.0)), (40.0, RUNNING), (50.0, (1, 2, 9.0)), (90.0, (2, 2, 9.0))]:
        tick(policy, at, state)
    assert policy._wakes.values == {}  # type: ignore[attr-defined]


def test_the_serve_config_names_the_policy() -> None:
    config = AutoscalingConfig(min_replicas=0, max_replicas=1, policy={"policy_function": AUTOSCALING_POLICY})
    assert config.policy.policy_function == AUTOSCALING_POLICY
    assert config.policy.get_policy() is FleetAutoscalingPolicy


def test_a_client_that_leaves_before_any_answer_is_a_499_not_a_router_error(
    recorded: metrics._Metrics,
) -> None:
    async def gone(_scope: Any, _receive: Any, _send: Any) -> None:
        metrics.note_model("alpha")
        raise asyncio.CancelledError  # what Serve does to the request task when its client disconnects

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(_message: Any) -> None:
        return None

    middleware = metrics.RequestMetricsMiddleware(gone, endpoint="unified")
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(middleware(scope, receive, send))
    assert len(recorded.requests.get(model="alpha", endpoint="unified", code="499")) == 1
    assert recorded.router_errors.values == {}
    assert recorded.waiting.get(model="alpha", endpoint="unified") == [1, 0]
