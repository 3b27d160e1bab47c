"""The deployed fleet, end to end: real Ray Serve, real vLLM CPU engines, the official openai client."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from modelfleet.localray import wait_for
from serving_app.server import server_deployment_name
from tests.serving.fleetspec import ADAPTERS, ALWAYS_ON, API_KEY, BROKEN, MISSING_ADAPTER, SLEEPY, Fleet

pytestmark = pytest.mark.serving
CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["router", "model-prefix"])
def test_chat_with_usage(fleet: Fleet, prefix: str) -> None:
    reply = fleet.client(prefix).chat.completions.create(model=ALWAYS_ON, messages=CHAT, max_tokens=8)
    assert reply.model == ALWAYS_ON
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 8


@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["router", "model-prefix"])
def test_chat_streaming_with_usage(fleet: Fleet, prefix: str) -> None:
    stream = fleet.client(prefix).chat.completions.create(
        model=ALWAYS_ON,
        messages=CHAT,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 8


def test_completions(fleet: Fleet) -> None:
    client = fleet.client()
    reply = client.completions.create(model=ALWAYS_ON, prompt="Once upon a time", max_tokens=6)
    assert reply.choices[0].text
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 6
    stream = client.completions.create(
        model=ALWAYS_ON,
        prompt="Once upon a time",
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_data_path_is_the_one_the_fleet_asked_for(fleet: Fleet) -> None:
    """highThroughput: the model's server is its application's ingress; otherwise our ingress fronts it."""
    deployments = set(fleet.applications()[ALWAYS_ON]["deployments"])
    if fleet.high_throughput:
        assert "ModelIngress" not in deployments
        assert server_deployment_name(ALWAYS_ON) in deployments
    else:
        assert deployments == {"ModelIngress", server_deployment_name(ALWAYS_ON)}


def test_models_lists_the_fleet(fleet: Fleet) -> None:
    ids = {m.id for m in fleet.client().models.list()}
    assert {ALWAYS_ON, SLEEPY} <= ids


def test_model_prefix_serves_only_its_model(fleet: Fleet) -> None:
    ids = [m.id for m in fleet.client(f"/{ALWAYS_ON}").models.list()]
    # A model's adapters are served under its prefix.
    assert ids == [ALWAYS_ON, *sorted([*ADAPTERS, MISSING_ADAPTER])]


def test_infer(fleet: Fleet) -> None:
    resp = fleet.infer(ALWAYS_ON, max_tokens=5)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_id"] == ALWAYS_ON
    assert isinstance(body["text"], str)
    assert body["finish_reason"] == "length"


def test_healthz_needs_no_key(fleet: Fleet) -> None:
    assert httpx.get(f"{fleet.url}/healthz", timeout=30).status_code == 200


def test_unknown_model_is_404_naming_the_known_ones(fleet: Fleet) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        fleet.client().chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=4)
    message = str(err.value)
    assert "no-such-model" in message
    assert ALWAYS_ON in message
    assert SLEEPY in message


def test_malformed_json_is_400(fleet: Fleet) -> None:
    resp = httpx.post(
        f"{fleet.url}/v1/chat/completions",
        content=b'{"model": "alpha", "messages": [',
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400
    assert "error" in resp.json()


def test_schema_invalid_body_is_400(fleet: Fleet) -> None:
    resp = httpx.post(
        f"{fleet.url}/v1/chat/completions",
        json={"model": ALWAYS_ON, "messages": "not a list"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    # OpenAI's `param` is the field's name (not its value) on the router and a model's own ingress.
    if not fleet.high_throughput:
        assert error["param"] == "messages", error


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["missing", "wrong"])
@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["router", "model-prefix"])
def test_auth_rejects(fleet: Fleet, key: str | None, prefix: str) -> None:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    resp = httpx.post(
        f"{fleet.url}{prefix}/v1/chat/completions",
        json={"model": ALWAYS_ON, "messages": CHAT, "max_tokens": 2},
        headers=headers,
        timeout=30,
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


def test_auth_with_sdk(fleet: Fleet) -> None:
    with pytest.raises(openai.AuthenticationError):
        fleet.client(api_key="wrong-key").models.list()
    assert fleet.client().models.list().data


def _at_zero(fleet: Fleet) -> bool:
    return bool(fleet.replicas(SLEEPY, server_deployment_name(SLEEPY)) == (0, 0))


# How long a sleeping model must stay asleep after requests without a valid key: longer than the autoscaler
# takes to start a replica for a real one (about a second).
STAYS_ASLEEP_S = 20


def test_a_request_without_a_valid_key_is_refused_at_once_and_wakes_nothing(fleet: Fleet) -> None:
    wait_for(f"{SLEEPY} at zero replicas", lambda: _at_zero(fleet), timeout_s=120, every_s=1)
    chat = {"model": SLEEPY, "messages": CHAT, "max_tokens": 4}
    for prefix in ("", f"/{SLEEPY}"):
        for headers in (
            {},
            {"Authorization": "Bearer sk-not-the-key"},
            {"Authorization": f"Basic {API_KEY}"},
        ):
            started = time.monotonic()
            reply = httpx.post(
                f"{fleet.url}{prefix}/v1/chat/completions", json=chat, headers=headers, timeout=30
            )
            took = time.monotonic() - started
            assert reply.status_code == 401, (prefix, headers, reply.text)
            assert reply.json()["error"]["type"] == "authentication_error"
            assert took < 1, f"401 after {took:.2f}s on {prefix or '/'}"
    deadline = time.monotonic() + STAYS_ASLEEP_S
    while time.monotonic() < deadline:
        assert fleet.replicas(SLEEPY, server_deployment_name(SLEEPY)) == (0, 0), (
            "a request without a key woke it"
        )
        time.sleep(1)


# The router's wake (a streamed request through the unified endpoint) is in test_metrics.py, which counts it.
@pytest.mark.parametrize("prefix", [f"/{SLEEPY}"], ids=["model-prefix"])
def test_scale_to_zero_then_wake(fleet: Fleet, prefix: str) -> None:
    wait_for(f"{SLEEPY} at zero replicas", lambda: _at_zero(fleet), timeout_s=120, every_s=1)
    assert _state(fleet, SLEEPY) == ("ScaledToZero", 0), "status must say the model sleeps"
    # A sleeping model counts as ready; only the broken one (where the fleet has it) makes it Degraded.
    assert fleet.status().phase == ("Degraded" if BROKEN in fleet.models else "Ready")
    started = time.monotonic()
    stream = fleet.client(prefix).chat.completions.create(
        model=SLEEPY, messages=CHAT, max_tokens=4, stream=True
    )
    first_token_s = None
    for chunk in stream:
        if first_token_s is None and chunk.choices and chunk.choices[0].delta.content:
            first_token_s = time.monotonic() - started
    assert first_token_s is not None
    print(f"cold start {prefix or '/'}: first token after {first_token_s:.1f}s")
    assert fleet.replicas(SLEEPY, server_deployment_name(SLEEPY))[1] == 1
    assert _state(fleet, SLEEPY) == ("Ready", 1)


def _state(fleet: Fleet, model: str) -> tuple[str, int | None]:
    found = next(m for m in fleet.status().models if m.name == model)
    return found.state, found.replicas


@pytest.mark.default_path_only
def test_broken_model_fails_alone_and_readably(fleet: Fleet) -> None:
    app = fleet.applications()[BROKEN]
    assert app["status"] == "DEPLOY_FAILED"
    # The application's own message is one clean line naming the failed deployment.
    assert "\x1b[" not in app["message"]
    assert "Traceback" not in app["message"]
    assert server_deployment_name(BROKEN) in app["message"]
    # Serve 2.60 puts the replica's traceback into the deployment message; its last line is ours:
    # the root cause in one line, no ANSI, which the status function shows.
    deployment = app["deployments"][server_deployment_name(BROKEN)]
    assert deployment["status"] == "DEPLOY_FAILED"
    last_line = deployment["message"].strip().splitlines()[-1]
    assert last_line.startswith("serving_app.errors.ModelStartupError: ")
    assert "/nonexistent/checkpoint" in last_line
    assert "\x1b[" not in last_line
    assert len(last_line) < 500
    # `modelfleet status` shows it Failed with that one line, and the others serving.
    broken = next(m for m in fleet.status().models if m.name == BROKEN)
    assert broken.state == "Failed"
    assert "/nonexistent/checkpoint" in broken.message
    assert "\x1b" not in broken.message and "Traceback" not in broken.message
    status = fleet.status()
    assert status.ready == f"{len(status.models) - 1}/{len(status.models)}"  # every model but this one
    # The rest of the fleet keeps answering.
    reply = fleet.client().chat.completions.create(model=ALWAYS_ON, messages=CHAT, max_tokens=2)
    assert reply.choices[0].message.content is not None


@pytest.mark.default_path_only
def test_status_command_prints_the_table(fleet: Fleet, state_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.cli", "status"],
        env={**os.environ, "MODELFLEET_HOME": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[3:8]}
    assert rows[ALWAYS_ON] == "Ready" and rows[BROKEN] == "Failed"
    assert rows[SLEEPY] in ("Ready", "ScaledToZero")
    assert f"{fleet.url}/v1" in result.stdout


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _listeners(fleet: Fleet) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket the fleet's processes listen on."""
    import psutil

    from modelfleet.localray import head_processes

    found = []
    for proc in head_processes(fleet.local.head).values():
        with contextlib.suppress(psutil.Error):
            name = proc.name()
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((name, conn.laddr.ip, conn.laddr.port))
    assert found, "the fleet's processes listen somewhere"
    return found


def test_the_fleet_listens_on_loopback_only(fleet: Fleet) -> None:
    """Every TCP listener of the fleet's processes is on 127.0.0.1: Ray's GCS, raylet, workers, dashboard,
    metrics, Serve's proxy or HAProxy, and the two kinds Ray 2.60 opens on every interface whatever its
    settings, which `modelfleet up` keeps on loopback too (serving_app/loopback.py): each replica's
    inter-deployment gRPC server and, in high-throughput mode, HAProxy's stats and metrics frontends."""
    listeners = _listeners(fleet)
    open_ = [(name, ip, port) for name, ip, port in listeners if ip not in LOOPBACK]
    assert not open_, f"listening beyond loopback: {open_}"
    names = {name for name, _, _ in listeners}
    assert any(name.startswith("ray::ServeRepli") for name in names), names  # the replicas were looked at
    if fleet.high_throughput:
        assert "haproxy" in names, names
