"""The serving logic in seconds: the fleet's applications on a real local Ray Serve, with a fake engine.

Every application is built by serving_app.app's builders from the args the renderer writes, and deployed
together as serveConfigV2 deploys them (standard data path: Serve's proxy, our ingresses, FleetLLMServer).
Only the engine is a stand-in (tests/support/fake_engine.py, behind Ray Serve LLM's own engine-class
seam), so the router, the model ingresses, the front doors, adapters, aliases, prefix-aware routing and
error handling run as they do in a fleet, and each reply says which model's server (and which replica)
answered, for which name and adapter.
tests/serving runs the same paths on real vLLM engines, for what needs the engine.

One Ray and one deployment serve the whole module: most of its time is the eight replicas starting (the
four model servers import vLLM for its request models); each test then takes a fraction of a second.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelfleet.api.v1alpha1 import ModelFleet
from modelfleet.local import local_serve_config
from modelfleet.localray import free_port, wait_for
from modelfleet_contract.args import AliasTargetArgs
from modelfleet_contract.wire import API_KEYS_DIR_ENV, LOOPBACK_ENV
from serving_app.adapters import pick_target
from tests.support import fake_engine
from tests.support.fake_engine import identity_of

REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-fake-fleet-key"
ALPHA, BETA = "alpha", "beta"
# Two replicas with prefix-aware routing.
GAMMA = "gamma"
POET, LOST = "alpha-poet", "alpha-lost"
LOST_SOURCE = "/nonexistent/adapter"
CANARY = "canary"
# Almost every request to the alias goes to alpha's adapter; a request with a `user` is deterministic.
CANARY_TARGETS = [AliasTargetArgs(model=POET, weight=1000), AliasTargetArgs(model=ALPHA, weight=1)]
MAX_REQUEST_BYTES, MAX_TOKENS, MAX_N = 4096, 64, 2
HELLO: list[Any] = [{"role": "user", "content": "Hello"}]
# Eight replicas start at once, the four model servers importing vLLM for its request models (~10 s of CPU
# each): about a minute on 2 idle cores; the deadline leaves room for a busy machine.
DEPLOY_TIMEOUT_S = 300


def fleet_document(poet_folder: Path) -> dict[str, Any]:
    """Three models on CPU, alpha with an adapter in a folder and one whose folder is missing, gamma on two
    replicas with prefix-aware routing, an alias over alpha and its adapter, one API key and small limits."""
    models = [
        {
            "name": name,
            "source": f"/models/{name}",  # never read: the fake engine loads nothing
            "accelerator": "cpu",
            "cpus": 0.1,
            "replicas": {"min": 1, "max": 1},
        }
        for name in (ALPHA, BETA, GAMMA)
    ]
    models[2]["replicas"] = {"min": 2, "max": 2}
    models[2]["routing"] = "prefixAware"
    models[0]["adapters"] = [
        {"name": POET, "source": str(poet_folder)},
        {"name": LOST, "source": LOST_SOURCE},
    ]
    models[0]["maxAdaptersPerReplica"] = 2
    return {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": "fake"},
        "spec": {
            "models": models,
            "aliases": [{"name": CANARY, "targets": [t.model_dump() for t in CANARY_TARGETS]}],
            "apiKey": {"secretName": "keys", "key": "key"},
            "limits": {
                "maxRequestBytes": MAX_REQUEST_BYTES,
                "maxTokens": MAX_TOKENS,
                "maxN": MAX_N,
                "bodyTimeoutSeconds": 5,
            },
        },
    }


class FakeFleet:
    """The deployed fleet's endpoint, with one HTTP client per key and prefix (closed at the end)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60)
        self._clients: dict[tuple[str, str], openai.OpenAI] = {}

    def client(self, prefix: str = "", api_key: str = API_KEY) -> openai.OpenAI:
        """The official SDK on the fleet's endpoint (`prefix` "") or a model's; no retries."""
        if (prefix, api_key) not in self._clients:
            self._clients[prefix, api_key] = openai.OpenAI(
                base_url=f"{self.url}{prefix}/v1", api_key=api_key, max_retries=0, timeout=60
            )
        return self._clients[prefix, api_key]

    def post(self, path: str, body: Any, key: str | None = API_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return self.http.post(path, json=body, headers=headers)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.http.close()


def _ray_env(keys_dir: Path) -> dict[str, str]:
    """What every process of the local Ray inherits: the fake engine, the key folder, loopback, offline."""
    return {
        fake_engine.ENGINE_CLS_ENV: fake_engine.ENGINE_CLS,
        API_KEYS_DIR_ENV: str(keys_dir),
        LOOPBACK_ENV: "1",  # replicas' gRPC servers on 127.0.0.1 (serving_app/loopback.py)
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # the node's address stays 127.0.0.1 (see localray.py)
        "RAY_AUTH_MODE": "disabled",  # no token to create under HOME
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "0",
        # Ray's own OOM killer watches the whole machine's memory: on a busy box it kills this test's replicas
        # (and Serve's controller) for what other processes use. The kernel's stays.
        "RAY_memory_monitor_refresh_ms": "0",
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFleet]:
    """One local Ray and the fleet's applications for the whole module, deployed as `modelfleet up` deploys
    them (the rendered config, HTTP on 127.0.0.1), with every model server on the fake engine."""
    import ray
    from ray import serve
    from ray._private import ray_constants

    from serving_app.ray_compat import RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING

    if RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING:
        pytest.skip("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING is set: these tests cover the standard path")
    files = tmp_path_factory.mktemp("fake-fleet")
    (files / "secrets" / "keys").mkdir(parents=True)
    (files / "secrets" / "keys" / "key").write_text(API_KEY + "\n")
    (files / POET).mkdir()
    config = local_serve_config(ModelFleet.model_validate(fleet_document(files / POET)), free_port())
    # Ray's sockets live under its temp dir, and AF_UNIX paths are limited to 107 bytes: keep it short.
    root = Path(tempfile.mkdtemp(prefix="mfs-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _ray_env(files / "secrets").items():
            patch.setenv(name, value)
        # Replicas import tests.support.fake_engine, wherever pytest was started from.
        patch.setenv("PYTHONPATH", str(REPO), prepend=os.pathsep)
        # Ray read that variable when this process imported it: the driver's node address too.
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        endpoint = None
        try:
            ray.init(
                address="local",
                num_cpus=2,
                num_gpus=0,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                _temp_dir=str(root),
                log_to_driver=False,
            )
            serve.start(http_options=config["http_options"], proxy_location=config["proxy_location"])
            apps = config["applications"]
            serve.run_many(
                [serve.RunTarget(_build(app), app["name"], app["route_prefix"]) for app in apps],
                wait_for_ingress_deployment_creation=False,
                wait_for_applications_running=False,
            )
            try:
                wait_for(
                    "the applications", lambda: _running(len(apps)), timeout_s=DEPLOY_TIMEOUT_S, every_s=0.2
                )
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}: {_statuses()}") from None
            http = config["http_options"]
            endpoint = FakeFleet(f"http://{http['host']}:{http['port']}")
            # Serve's proxy learns the routes after the applications run.
            wait_for(
                "the router's /healthz", lambda: _answers(endpoint, "/healthz"), timeout_s=60, every_s=0.2
            )
            yield endpoint
        finally:
            try:
                if endpoint is not None:
                    endpoint.close()
                if ray.is_initialized():
                    serve.shutdown()
            finally:
                ray.shutdown()
                shutil.rmtree(root, ignore_errors=True)


def _build(app: dict[str, Any]) -> Any:
    """The Serve application `app` of the config, built by the builder its import_path names."""
    module, _, name = app["import_path"].partition(":")
    return getattr(importlib.import_module(module), name)(app["args"])


def _running(count: int) -> bool:
    from ray import serve

    apps = serve.status().applications
    failed = {name: app.message for name, app in apps.items() if app.status == "DEPLOY_FAILED"}
    if failed:
        raise RuntimeError(f"applications failed to deploy: {failed}")
    return len(apps) == count and all(app.status == "RUNNING" for app in apps.values())


def _statuses() -> dict[str, Any]:
    """Each application's and deployment's status and message, for a deployment that timed out."""
    from ray import serve

    return {
        name: (app.status, {d: (s.status, s.message[:300]) for d, s in app.deployments.items()})
        for name, app in serve.status().applications.items()
    }


def _answers(fleet: FakeFleet, path: str) -> bool:
    try:
        return fleet.http.get(path, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _reply(client: openai.OpenAI, model: str, **extra: Any) -> tuple[str, dict[str, str]]:
    """(the model a chat reply names, who answered it: the fake engine's identity words)."""
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, **extra)
    return reply.model, identity_of(reply.choices[0].message.content or "")


def _error(reply: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of a refused request."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == status, error
    return error


@pytest.mark.parametrize("model", [ALPHA, BETA])
def test_the_router_sends_chat_completions_and_infer_to_the_model_they_name(
    fleet: FakeFleet, model: str
) -> None:
    client = fleet.client()
    chat = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8)
    assert chat.model == model and chat.choices[0].finish_reason == "length"
    assert chat.usage is not None and chat.usage.completion_tokens == 8
    who = identity_of(chat.choices[0].message.content or "")
    assert (who["engine"], who["model"], who["lora"], who["multiplexed"]) == (model, model, "-", "-")
    completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6)
    assert completion.model == model and identity_of(completion.choices[0].text)["engine"] == model
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    infer = fleet.post("/v1/infer", {"model_id": model, "input": "Hello", "params": {"max_tokens": 6}})
    assert infer.status_code == 200, infer.text
    assert infer.json()["model_id"] == model and infer.json()["finish_reason"] == "length"
    assert identity_of(infer.json()["text"])["engine"] == model
    # The model's own prefix goes through its ingress to the same server.
    assert _reply(fleet.client(f"/{model}"), model)[1]["pid"] == who["pid"]


@pytest.mark.parametrize("prefix", ["", f"/{BETA}"], ids=["router", "model-prefix"])
def test_streams_arrive_whole_in_order_and_end_with_usage(fleet: FakeFleet, prefix: str) -> None:
    client = fleet.client(prefix)
    options: Any = {"include_usage": True}
    chat = list(
        client.chat.completions.create(
            model=BETA,
            messages=HELLO,
            max_tokens=8,
            stream=True,
            stream_options=options,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
    assert text.split()[:2] == [f"engine={BETA}", f"model={BETA}"] and len(text.split()) == 8, text
    assert [c.choices[0].finish_reason for c in chat if c.choices][-1] == "length"
    assert chat[-1].usage is not None and chat[-1].usage.completion_tokens == 8
    completion = list(
        client.completions.create(model=BETA, prompt="Hi", max_tokens=6, stream=True, stream_options=options)
    )
    assert "".join(c.choices[0].text for c in completion if c.choices).split()[0] == f"engine={BETA}"
    assert completion[-1].usage is not None and completion[-1].usage.completion_tokens == 6


def test_models_lists_models_adapters_with_their_model_and_aliases_with_their_targets(
    fleet: FakeFleet,
) -> None:
    cards = {card.id: card.model_dump() for card in fleet.client().models.list()}
    assert list(cards) == [ALPHA, BETA, GAMMA, LOST, POET, CANARY]  # models, adapters, aliases; each sorted
    assert cards[ALPHA]["parent"] is None and cards[BETA]["parent"] is None
    assert cards[POET]["parent"] == ALPHA and cards[LOST]["parent"] == ALPHA
    assert cards[CANARY]["targets"] == [t.model_dump() for t in CANARY_TARGETS]
    assert fleet.client().models.retrieve(POET).model_dump()["parent"] == ALPHA
    # A model's prefix lists the model and its adapters only.
    assert [card.id for card in fleet.client(f"/{ALPHA}").models.list()] == [ALPHA, LOST, POET]
    assert [card.id for card in fleet.client(f"/{BETA}").models.list()] == [BETA]


@pytest.mark.parametrize(
    ("prefix", "known"),
    [("", [ALPHA, LOST, POET, BETA, GAMMA, CANARY]), (f"/{ALPHA}", [ALPHA, LOST, POET])],
    ids=["router", "model-prefix"],
)
def test_an_unknown_model_is_a_404_in_openai_shape_listing_the_known_names(
    fleet: FakeFleet, prefix: str, known: list[str]
) -> None:
    for path, body in (
        ("/v1/chat/completions", {"model": "nope", "messages": HELLO}),
        ("/v1/completions", {"model": "nope", "prompt": "Hi"}),
        ("/v1/infer", {"model_id": "nope", "input": "Hi"}),
    ):
        error = _error(fleet.post(f"{prefix}{path}", body), 404)
        assert (
            error["message"] == f"The model 'nope' does not exist. Known models: {', '.join(sorted(known))}."
        )
        assert error["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        fleet.client(prefix).models.retrieve("nope")


@pytest.mark.parametrize("prefix", ["", f"/{GAMMA}"], ids=["router", "model-prefix"])
def test_requests_sharing_a_long_prefix_land_on_one_replica(fleet: FakeFleet, prefix: str) -> None:
    from ray import serve

    from serving_app.server import server_deployment_name

    server = serve.status().applications[GAMMA].deployments[server_deployment_name(GAMMA)]
    assert server.replica_states.get("RUNNING") == 2, server.replica_states
    client = fleet.client(prefix)
    shared = "You are the fleet's helpful assistant. " + "Models and replicas share a cluster. " * 12
    answered = []
    for i in range(12):  # one at a time: the replicas stay equally idle, so only the prefix decides
        messages: Any = [{"role": "system", "content": shared}, {"role": "user", "content": f"Question {i}?"}]
        reply = client.chat.completions.create(model=GAMMA, messages=messages, max_tokens=6)
        answered.append(identity_of(reply.choices[0].message.content or "")["pid"])
    # Spread at random over two idle replicas, all twelve would share one 1 time in 2048.
    assert len(set(answered)) == 1, f"requests sharing a prefix were spread over replicas: {answered}"


@pytest.mark.parametrize("prefix", ["", f"/{ALPHA}"], ids=["router", "model-prefix"])
def test_an_adapter_runs_on_its_model_s_server_as_the_multiplexed_model_id(
    fleet: FakeFleet, prefix: str
) -> None:
    named, who = _reply(fleet.client(prefix), POET)
    assert named == POET
    assert (who["engine"], who["model"], who["lora"], who["multiplexed"]) == (ALPHA, POET, POET, POET)
    infer = fleet.post(f"{prefix}/v1/infer", {"model_id": POET, "input": "Hi", "params": {"max_tokens": 6}})
    assert infer.status_code == 200, infer.text
    assert identity_of(infer.json()["text"])["lora"] == POET and infer.json()["model_id"] == POET


def test_an_alias_answers_with_one_of_its_targets(fleet: FakeFleet) -> None:
    client = fleet.client()
    # A user always gets the same target; pick one whose target is the adapter.
    user = next(
        u for u in (f"user-{i}" for i in range(100)) if pick_target(CANARY, CANARY_TARGETS, u) == POET
    )
    named, who = _reply(client, CANARY, user=user)
    assert named == POET  # the reply names the target, and the engine saw the target's name
    assert (who["engine"], who["model"], who["multiplexed"]) == (ALPHA, POET, POET)
    assert all(_reply(client, CANARY, user=user)[0] == POET for _ in range(3))
    assert _reply(client, CANARY)[0] in {POET, ALPHA}
    completion = client.completions.create(model=CANARY, prompt="Hi", max_tokens=6, user=user)
    assert completion.model == POET


@pytest.mark.parametrize("prefix", ["", f"/{ALPHA}"], ids=["router", "model-prefix"])
def test_an_adapter_that_cannot_load_fails_alone_naming_its_source(fleet: FakeFleet, prefix: str) -> None:
    client = fleet.client(prefix)
    pid = _reply(client, ALPHA)[1]["pid"]
    with pytest.raises(openai.InternalServerError) as refused:
        _reply(client, LOST)
    message = refused.value.message
    assert LOST in message and LOST_SOURCE in message and "Traceback" not in message, message
    # The model and its other adapter keep answering, from the same replica.
    who = _reply(client, POET)[1]
    assert (who["lora"], who["pid"]) == (POET, pid)
    assert _reply(client, ALPHA)[1]["pid"] == pid


@pytest.mark.parametrize("prefix", ["", f"/{ALPHA}"], ids=["router", "model-prefix"])
def test_the_front_door_wants_one_of_the_fleet_s_keys(fleet: FakeFleet, prefix: str) -> None:
    body = {"model": ALPHA, "messages": HELLO, "max_tokens": 4}
    for key in (None, "sk-wrong"):
        reply = fleet.post(f"{prefix}/v1/chat/completions", body, key=key)
        assert _error(reply, 401)["type"] == "authentication_error"
        assert reply.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        fleet.client(prefix, api_key="sk-wrong").models.list()
    assert fleet.http.get(f"{prefix}/healthz").status_code == 200  # probes need no key
    assert fleet.post(f"{prefix}/v1/chat/completions", body).status_code == 200


@pytest.mark.parametrize("prefix", ["", f"/{ALPHA}"], ids=["router", "model-prefix"])
def test_limits_and_tasks_are_refused_in_openai_shape_before_the_model(fleet: FakeFleet, prefix: str) -> None:
    chat = f"{prefix}/v1/chat/completions"
    error = _error(fleet.post(chat, {"model": ALPHA, "messages": HELLO, "max_tokens": MAX_TOKENS + 1}), 400)
    assert error["param"] == "max_tokens" and f"max_tokens is {MAX_TOKENS + 1}" in error["message"], error
    assert "limits.maxTokens" in error["message"]
    error = _error(
        fleet.post(f"{prefix}/v1/completions", {"model": ALPHA, "prompt": "Hi", "n": MAX_N + 1}), 400
    )
    assert error["param"] == "n" and "limits.maxN" in error["message"], error
    big = [{"role": "user", "content": "x" * MAX_REQUEST_BYTES}]
    error = _error(fleet.post(chat, {"model": ALPHA, "messages": big, "max_tokens": 4}), 413)
    assert "limits.maxRequestBytes" in error["message"], error
    error = _error(fleet.post(f"{prefix}/v1/embeddings", {"model": ALPHA, "input": "Hi"}), 400)
    assert f"'{ALPHA}' has task 'generate'" in error["message"] and "/v1/chat/completions" in error["message"]
    assert error["param"] == "model"
    error = _error(fleet.post(chat, {"model": ALPHA, "messages": "not a list"}), 400)
    assert error["param"] == "messages", error
    # None of it reached the model, which answers the next request.
    assert _reply(fleet.client(prefix), ALPHA)[0] == ALPHA


@pytest.mark.parametrize("prefix", ["", f"/{ALPHA}"], ids=["router", "model-prefix"])
def test_engine_errors_are_openai_errors_and_the_replica_keeps_serving(fleet: FakeFleet, prefix: str) -> None:
    chat = f"{prefix}/v1/chat/completions"
    pid = _reply(fleet.client(prefix), ALPHA)[1]["pid"]
    # The engine refuses (vLLM's ErrorResponse): its status, and its message.
    refused = [{"role": "user", "content": fake_engine.REFUSE}]
    error = _error(fleet.post(chat, {"model": ALPHA, "messages": refused, "max_tokens": 4}), 400)
    assert fake_engine.REFUSAL_MESSAGE in error["message"], error
    infer = fleet.post(f"{prefix}/v1/infer", {"model_id": ALPHA, "input": fake_engine.REFUSE})
    assert _error(infer, 400)["message"] == f"{fake_engine.REFUSAL_MESSAGE} ({ALPHA})"
    # The engine fails before its first token: a 500, streamed or not.
    failing = [{"role": "user", "content": fake_engine.RAISE}]
    for stream in (False, True):
        body = {"model": ALPHA, "messages": failing, "max_tokens": 4, "stream": stream}
        assert _error(fleet.post(chat, body), 500)["type"] == "InternalServerError"
    with pytest.raises(openai.InternalServerError):
        fleet.client(prefix).completions.create(model=POET, prompt=fake_engine.RAISE, max_tokens=4)
    # Nothing of it took the replica down.
    named, who = _reply(fleet.client(prefix), POET)
    assert named == POET and who["pid"] == pid


def test_an_engine_failure_mid_stream_ends_the_stream_with_an_error(fleet: FakeFleet) -> None:
    failing: list[Any] = [{"role": "user", "content": fake_engine.RAISE_MID_STREAM}]
    stream = fleet.client().chat.completions.create(model=ALPHA, messages=failing, max_tokens=8, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
