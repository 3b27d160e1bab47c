"""The fleet's endpoint routed by the body's `model` in HAProxy (serving_app/haproxy.py), on the config Ray
Serve renders and the HAProxy binary Ray Serve installs, through both wrappers: `modelfleet up`'s and the one
a fleet's ConfigMap brings into its Ray pods. A request naming a routed model reaches the model's backend
under its prefix; everything else reaches the fleet's router untouched."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from modelfleet.api.v1alpha1 import ModelFleet, ModelFleetSpec
from modelfleet.localray import UNIFIED_ROUTES_FILE, free_port, haproxy_env, wait_for
from modelfleet.render import render, render_config_map
from modelfleet.render.routes import HAPROXY_MODE
from modelfleet.render.serve_config import serve_config
from modelfleet_contract.routing import UnifiedRouting, unified_routing
from modelfleet_contract.wire import HAPROXY_ROUTES_KEY as ROUTES_KEY
from modelfleet_contract.wire import HAPROXY_WRAPPER_KEY as WRAPPER_KEY
from modelfleet_contract.wire import LOOPBACK_ENV, ROUTED_HEADER
from serving_app.haproxy import bundled_haproxy, route_by_model


class _Echo(BaseHTTPRequestHandler):
    """A stand-in replica: answers every request with its server's name and the path it got."""

    def _answer(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if "overload-me" in body:  # as Serve's replica refuses a request over its queue
            self.send_response(503)
            self.send_header("content-type", "text/plain; charset=utf-8")
            self.send_header("retry-after", "1")
            self.send_header("content-length", "35")
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # HAProxy need not read what it replaces
                self.wfile.write(b"Request dropped due to backpressure")
            return
        reply = json.dumps(
            {
                "server": self.server.name,  # type: ignore[attr-defined]
                "path": self.path,
                "body": body,
                "endpoint": self.headers.get(ROUTED_HEADER),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


HITS: dict[str, list[str]] = {}  # the paths each echo server of the running test was asked for


@pytest.fixture
def replicas() -> Iterator[dict[str, int]]:
    """One echo server per application: the router at / and two models."""
    servers = {}
    for name in ("fleet", "alpha", "gamma"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        server.name = name  # type: ignore[attr-defined]
        server.hits = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
        HITS[name] = server.hits  # type: ignore[attr-defined]
    yield {name: server.server_address[1] for name, server in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def ray_config(root: Path, ports: dict[str, int], frontend_port: int) -> Path:
    """Ray Serve's HAProxy config for these backends, rendered by Ray's own code."""
    from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
    from ray.serve.config import HTTPOptions

    config = HAProxyConfig(
        socket_path=str(root / "haproxy.sock"),
        server_state_base=str(root / "state"),
        server_state_file=str(root / "state" / "server-state"),
        stats_port=free_port(),
        metrics_port=free_port(),
        metrics_socket_path=str(root / "metrics.sock"),
        http_options=HTTPOptions(host="127.0.0.1", port=frontend_port),
        has_received_routes=True,
        has_received_servers=True,
    )
    backends = {
        name: BackendConfig(
            name=name,
            app_name=name,
            path_prefix="/" if name == "fleet" else f"/{name}",
            servers=[ServerConfig(f"{name}-1", "127.0.0.1", port)],
        )
        for name, port in ports.items()
    }
    api = HAProxyApi(config, backends, config_file_path=str(root / "haproxy.cfg"))
    api._generate_config_file_internal()
    return root / "haproxy.cfg"


def test_the_routes_are_the_models_haproxy_may_route_by_name() -> None:
    spec = ModelFleetSpec.model_validate(
        {
            "models": [
                {"name": "alpha", "source": "/m", "adapters": [{"name": "alpha-sql", "source": "/a"}]},
                {"name": "gamma", "source": "/m", "routing": "prefixAware"},
                {"name": "minilm", "source": "/m", "task": "embed"},
            ],
            "aliases": [{"name": "chat", "targets": [{"model": "alpha", "weight": 1}]}],
            "limits": {"bodyTimeoutSeconds": 30},
        }
    )
    # Not the prefix-aware model (the router picks its replica by the prompt), no adapter or alias.
    assert unified_routing(serve_config(spec)) == UnifiedRouting({"alpha": "/alpha", "minilm": "/minilm"}, 30)


def cluster_wrapper(folder: Path, routing: UnifiedRouting) -> Path:
    """The files of a high-throughput fleet's ConfigMap as its Ray pods mount them (the key names, the
    volume's mode), with these routes: the wrapper RAY_SERVE_HAPROXY_BINARY_PATH names there."""
    fleet = ModelFleet.model_validate(
        {
            "apiVersion": "modelfleet.dev/v1alpha1",
            "kind": "ModelFleet",
            "metadata": {"name": "fast", "namespace": "llm"},
            "spec": {"highThroughput": True, "models": [{"name": "alpha", "source": "/m"}]},
        }
    )
    config_map = render_config_map(fleet)
    assert config_map is not None
    data = {**config_map["data"], ROUTES_KEY: routing.dumps()}
    folder.mkdir()
    for key, value in data.items():
        (folder / key).write_text(value)
        (folder / key).chmod(HAPROXY_MODE)
    (env,) = [
        c["env"]
        for c in render(fleet)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]
    ]
    (binary,) = [e["value"] for e in env if e["name"] == "RAY_SERVE_HAPROXY_BINARY_PATH"]
    assert binary.endswith(f"/{WRAPPER_KEY}")
    return folder / WRAPPER_KEY


def start_haproxy(
    folder: Path, wrapper: str, routing: UnifiedRouting, config: Path, monkeypatch: pytest.MonkeyPatch
) -> subprocess.Popen[bytes]:
    """Ray's HAProxy on `config` through `wrapper`, as Ray starts it, routing by `routing`."""
    if wrapper == "cluster":
        binary = cluster_wrapper(folder / "configmap", routing)
        monkeypatch.setenv(LOOPBACK_ENV, "1")  # as a local head sets it; in a pod the pod's network binds
        # The image's python3 first on PATH and the wrapper named as Ray's HAProxy, as in a Ray pod.
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(binary))
    else:
        (folder / UNIFIED_ROUTES_FILE).write_text(routing.dumps())
        binary = Path(haproxy_env(folder, loopback=True)["RAY_SERVE_HAPROXY_BINARY_PATH"])
    command = [str(binary), "-db", "-f", str(config)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("wrapper", ["modelfleet-up", "cluster"])
def test_a_request_naming_a_model_reaches_its_backend_under_its_prefix(
    tmp_path: Path, replicas: dict[str, int], wrapper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    frontend = free_port()
    config = ray_config(tmp_path, replicas, frontend)
    # beta is routed but not deployed (no backend): its requests must stay with the router.
    routing = UnifiedRouting({"alpha": "/alpha", "beta": "/beta"}, body_timeout_s=2)
    haproxy = start_haproxy(tmp_path, wrapper, routing, config, monkeypatch)
    url = f"http://127.0.0.1:{frontend}"
    try:
        with httpx.Client(base_url=url, timeout=10) as client:

            def post(path: str, body: Any) -> dict[str, Any]:
                # A client's own routing mark never gets through: HAProxy sets it on what it routed only.
                reply = client.post(path, content=json.dumps(body), headers={ROUTED_HEADER: "unified"})
                assert reply.status_code == 200, reply.text
                answer: dict[str, Any] = reply.json()
                return answer

            def answers() -> bool:
                try:
                    return client.get("/v1/models").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for("HAProxy", answers, timeout_s=30)
            chat = {"messages": [{"role": "user", "content": "hi"}], "model": "alpha", "stream": True}
            routed = post("/v1/chat/completions", chat)
            assert (routed["server"], routed["path"]) == ("alpha", "/alpha/v1/chat/completions")
            assert routed["endpoint"] == "unified"  # the model's server counts it as the fleet endpoint's
            assert json.loads(routed["body"]) == chat  # the body goes on whole
            assert post("/v1/embeddings", {"model": "alpha", "input": "x"})["path"] == "/alpha/v1/embeddings"
            assert post("/v1/completions?x=1", {"model": "alpha"})["path"] == "/alpha/v1/completions?x=1"
            # The router's: other names (adapters, aliases, unknown, not deployed), other paths, no model.
            for path, body in [
                ("/v1/chat/completions", {"model": "alpha-sql"}),
                ("/v1/chat/completions", {"model": "beta"}),
                ("/v1/chat/completions", {"model": "alph"}),
                ("/v1/chat/completions", {"messages": []}),
                ("/v1/chat/completions", "not json"),
                ("/v1/infer", {"model": "alpha"}),
                ("/alpha/v1/chat/completions", {"model": "fleet"}),
            ]:
                reached = post(path, body)
                expected = "alpha" if path.startswith("/alpha/") else "fleet"
                assert (reached["server"], reached["path"], reached["endpoint"]) == (expected, path, None), (
                    body
                )
            assert client.get("/v1/models").json()["server"] == "fleet"
            # A full queue's refusal: OpenAI's shape on the fleet's endpoint, as the router answers it.
            refused = client.post("/v1/chat/completions", json={"model": "alpha", "user": "overload-me"})
            assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
            assert refused.json()["error"] == {
                "message": "The model is overloaded (its queue is full), retry in 1s.",
                "type": "overloaded_error",
                "param": None,
                "code": 503,
            }
            # Under the model's own prefix HAProxy passes the replica's answer on as it is.
            direct = client.post("/alpha/v1/chat/completions", json={"model": "alpha", "user": "overload-me"})
            assert (direct.status_code, direct.text) == (503, "Request dropped due to backpressure")
            # A body that does not arrive within limits.bodyTimeoutSeconds: the router's 408, in its shape.
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", frontend), timeout=30) as slow:
                slow.sendall(
                    b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model"'
                )
                answer = slow.recv(65536)
            status, _, body = answer.partition(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 408"), answer
            assert json.loads(body)["error"]["message"] == (
                "The request body did not arrive within 2 s (limits.bodyTimeoutSeconds)."
            )
            assert 1.5 < time.monotonic() - started < 10
        # Every listener of this HAProxy is on loopback (the stats frontend Ray's template binds on *).
        listening = [c.laddr for c in psutil.Process(haproxy.pid).net_connections() if c.status == "LISTEN"]
        assert listening and all(address.ip == "127.0.0.1" for address in listening), listening
    finally:
        haproxy.kill()
        output = haproxy.communicate(timeout=30)[0].decode(errors="replace")
    # (Ray's metrics log socket has no reader here: HAProxy's alerts about that are not the config's.)
    alerts = [line for line in output.splitlines() if "[ALERT]" in line and "failed in logger" not in line]
    assert not alerts, output


@pytest.mark.parametrize("wrapper", ["modelfleet-up", "cluster"])
def test_without_one_of_the_fleets_keys_haproxy_answers_401_at_once_and_no_backend_hears_of_it(
    tmp_path: Path, replicas: dict[str, int], wrapper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    for name, key in {"team-a/key": "sk-a\n", "team-b/key": "sk-b"}.items():
        (keys / name).parent.mkdir(parents=True)
        (keys / name).write_text(key)
    monkeypatch.setenv("MODELFLEET_API_KEYS_DIR", str(keys))
    frontend = free_port()
    config = ray_config(tmp_path, replicas, frontend)
    routing = UnifiedRouting({"alpha": "/alpha"}, body_timeout_s=2, api_keys=("team-a/key", "team-b/key"))
    haproxy = start_haproxy(tmp_path, wrapper, routing, config, monkeypatch)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{frontend}", timeout=10) as client:

            def status(path: str, key: str | None, body: Any = None) -> int:
                headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
                return client.post(path, json=body or {"model": "alpha"}, headers=headers).status_code

            def answers() -> bool:
                try:
                    return client.get("/-/healthz").status_code < 500  # health checks need no key
                except httpx.TransportError:
                    return False

            wait_for("HAProxy", answers, timeout_s=30)
            for path in ("/v1/chat/completions", "/alpha/v1/chat/completions", "/v1/models", "/v1/infer"):
                for key in (None, "sk-c", "sk-a sk-b", "sk-", "sk-a\tx"):
                    started = time.monotonic()
                    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
                    refused = client.post(path, json={"model": "alpha"}, headers=headers)
                    assert refused.status_code == 401, (path, key)
                    assert time.monotonic() - started < 1
                    assert refused.headers["www-authenticate"] == "Bearer"
                    assert refused.json()["error"]["type"] == "authentication_error"
                    assert "Authorization: Bearer <key>" in refused.json()["error"]["message"]
            basic = client.post(
                "/v1/models", headers={"Authorization": "Basic sk-a"}
            )  # a key, not as a Bearer
            assert basic.status_code == 401
            # Nothing reached any router or model (HAProxy's own health checks aside).
            assert {name: [p for p in hits if p != "/-/healthz"] for name, hits in HITS.items()} == {
                "fleet": [],
                "alpha": [],
                "gamma": [],
            }
            assert (
                client.post(
                    "/v1/chat/completions", json={"model": "alpha"}, headers={"Authorization": "bearer  sk-a"}
                ).status_code
                == 200
            )
            assert status("/alpha/v1/chat/completions", "sk-b") == 200
            assert client.get("/alpha/healthz").status_code == 200  # a model's health check needs no key
            # A rotated key applies within the front doors' reload period, without a reload.
            (keys / "team-b/key").write_text("sk-b2")
            wait_for("the rotated key", lambda: status("/v1/completions", "sk-b2") == 200, timeout_s=10)
            assert status("/v1/completions", "sk-b") == 401
            # A key added to the fleet (a new Secret in the routes) applies the same way.
            (keys / "team-c").mkdir()
            (keys / "team-c/key").write_text("sk-c")
            added = UnifiedRouting(routing.models, routing.body_timeout_s, (*routing.api_keys, "team-c/key"))
            routes = tmp_path / ("configmap/" + ROUTES_KEY if wrapper == "cluster" else UNIFIED_ROUTES_FILE)
            routes.write_text(added.dumps())
            wait_for("the added key", lambda: status("/v1/completions", "sk-c") == 200, timeout_s=10)
    finally:
        haproxy.kill()
        output = haproxy.communicate(timeout=30)[0].decode(errors="replace")
    alerts = [line for line in output.splitlines() if "[ALERT]" in line and "failed in logger" not in line]
    assert not alerts, output


def test_the_edit_leaves_a_config_without_an_http_frontend_or_deployed_models_alone(
    tmp_path: Path, replicas: dict[str, int]
) -> None:
    config = ray_config(tmp_path, {"fleet": replicas["fleet"]}, free_port()).read_text()
    routing = UnifiedRouting({"alpha": "/alpha"})
    assert route_by_model(config, routing) == config
    assert route_by_model("global\n    maxconn 10\n", routing) == "global\n    maxconn 10\n"


def test_haproxy_accepts_the_edited_config(tmp_path: Path, replicas: dict[str, int]) -> None:
    config = ray_config(tmp_path, replicas, free_port())
    config.write_text(
        route_by_model(config.read_text(), UnifiedRouting({"alpha": "/alpha", "gamma": "/gamma"}))
    )
    check = subprocess.run(
        [bundled_haproxy(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_wrapper_imports_only_the_standard_library() -> None:
    """The serving image installs ModelFleet's package without its dependencies: the HAProxy wrapper must
    load there (else the cluster wrapper falls back to Ray's HAProxy, and the fleet's endpoint to the
    router)."""
    third_party = {
        "pydantic",
        "jinja2",
        "yaml",
        "kopf",
        "kubernetes",
        "ray",
        "modelfleet",
        "httpx",
        "starlette",
    }
    probe = (
        "import sys; import serving_app.haproxy; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(third_party)!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert found.stdout.strip() == "[]", found.stdout + found.stderr


def test_the_cluster_wrapper_runs_rays_haproxy_unchanged_where_modelfleet_is_missing(tmp_path: Path) -> None:
    """A custom image without ModelFleet's package still serves (through the router), and says why."""
    wrapper = cluster_wrapper(tmp_path / "configmap", UnifiedRouting({"alpha": "/alpha"}))
    site = tmp_path / "no-modelfleet"
    site.mkdir()
    (site / "serving_app.py").write_text("raise ImportError('no ModelFleet in this image')\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),  # as Ray's environment names it
    }
    found = subprocess.run(  # not from the work tree: `python3 -c` looks in its folder first
        [str(wrapper), "-v"], capture_output=True, text=True, timeout=60, env=env, cwd=site, check=False
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert "HAProxy version" in found.stdout
    assert "no ModelFleet in this image: Ray Serve HAProxy runs without routing by model" in found.stderr
