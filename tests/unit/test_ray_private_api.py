"""The parts of Ray Serve LLM's private API (`ray.llm._internal`) the serving app overrides or relies on.

An import that moves fails loudly by itself; an overridden method that Ray renames, or a call Ray stops
making, would fail silently (our override simply never runs). These pins fail on the next Ray version that
changes them, naming what to look at."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
from ray.llm._internal.serve.core.ingress import ingress
from ray.llm._internal.serve.core.ingress.router import LLMRouter
from ray.llm._internal.serve.core.ingress.utils import _apply_openai_json_format
from ray.llm._internal.serve.core.server import llm_server
from ray.serve.llm import LLMServer

from serving_app.adapters import AdapterLoader
from serving_app.ingress import FleetIngress
from serving_app.server import FleetLLMServer


def test_the_ingress_calls_the_methods_fleet_ingress_overrides() -> None:
    base = ingress.OpenAiIngress
    get_response = base._get_response
    assert inspect.isasyncgenfunction(get_response)
    params = inspect.signature(get_response).parameters
    assert {"body", "call_method", "raw_request"} <= set(params)
    # Every inference call goes through _get_response, which resolves the model through _get_model_id.
    assert "self._get_response(" in inspect.getsource(base._process_llm_request)
    assert "self._get_model_id(" in inspect.getsource(get_response)
    for name in ("_get_response", "_get_model_id"):
        assert name in vars(FleetIngress), f"FleetIngress no longer overrides {name}"


def test_a_string_chunk_is_streamed_as_is() -> None:
    # FleetIngress ends a stream whose replica died with a ready-made SSE error event.
    event = 'data: {"error": {"message": "x"}}\n\n'
    assert _apply_openai_json_format(event) == event  # type: ignore[arg-type]


def test_the_model_server_builds_its_own_asgi_app_in_direct_streaming() -> None:
    assert inspect.iscoroutinefunction(LLMServer.__serve_build_asgi_app__)


def test_the_ingress_routes_an_adapter_through_the_handle_method_fleet_ingress_overrides() -> None:
    # An adapter's request gets its model's handle with the adapter as multiplexed model id.
    base = ingress.OpenAiIngress
    assert "self._get_configured_serve_handle(" in inspect.getsource(base._get_response)
    init = inspect.getsource(base.__init__)
    assert "self._configured_serve_handles" in init and "self._default_serve_handles" in init
    assert "_get_configured_serve_handle" in vars(FleetIngress)


def test_the_model_server_loads_adapters_through_the_loader_hook_fleet_llm_server_fills() -> None:
    assert "model_downloader" in inspect.signature(LLMServer.__init__).parameters
    loader = inspect.getsource(LLMServer._init_multiplex_loader)
    assert "download_timeout_s=" in loader and "max_tries=" in loader
    assert ".load_model_from_config(" in loader and "lora_model_id=" in loader and "llm_config=" in loader
    assert set(inspect.signature(AdapterLoader.load_model_from_config).parameters) >= {
        "lora_model_id",
        "llm_config",
    }
    assert {"model_id", "local_path", "max_total_tokens", "lora_assigned_int_id"} <= set(
        DiskMultiplexConfig.model_fields
    )
    # A handle call names its adapter as the multiplexed model id, which LLMServer resolves before the engine
    # runs (the method FleetLLMServer overrides to make a failed load one clean line).
    assert "_ResolveLoRAMiddleware" in inspect.getsource(LLMServer.__serve_build_asgi_app__)
    assert "self._maybe_resolve_lora_from_multiplex()" in inspect.getsource(LLMServer._run_request)
    middleware = inspect.getsource(llm_server._ResolveLoRAMiddleware)
    assert "_maybe_resolve_lora_from_multiplex()" in middleware and "except HTTPException" in middleware
    assert "_maybe_resolve_lora_from_multiplex" in vars(FleetLLMServer)
    assert "serve.get_multiplexed_model_id()" in inspect.getsource(
        LLMServer._maybe_resolve_lora_from_multiplex
    )


def test_the_request_router_is_built_as_the_direct_app_builds_it() -> None:
    # serving_app.app binds Ray's router to the server itself (Ray's builder refuses LoRA without forwarding
    # bodies to the router, which the fleet leaves off).
    router = LLMRouter.__bases__[0]  # the class @serve.ingress wrapped
    assert router.__name__ == "LLMRouter"
    assert {"server", "llm_config", "base_model_id"} <= set(inspect.signature(router.__init__).parameters)
    # FleetLLMServer.load_adapter loads through the multiplexed loader and the engine's resolve_lora.
    assert "self._load_model = serve.multiplexed(" in inspect.getsource(LLMServer._init_multiplex_loader)
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine

    assert "disk_lora_model" in inspect.signature(VLLMEngine.resolve_lora).parameters


# Ray Serve internals behind a local fleet's loopback-only listeners (serving_app/loopback.py, localray.py).


def test_replicas_bind_their_grpc_server_through_the_name_loopback_replaces() -> None:
    from ray.serve._private import replica

    # The inter-deployment gRPC server binds "[::]:0" through the module-level name we wrap, after the user
    # callable (our classes, whose import installs the wrapper) exists.
    source = inspect.getsource(replica.Replica._on_initialized)
    assert 'add_port_to_grpc_server(self._server, "[::]:0")' in source
    assert callable(replica.add_port_to_grpc_server)


def test_the_grpc_bind_goes_to_loopback_only_where_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private import replica

    from serving_app.loopback import LOOPBACK_ENV, keep_replica_grpc_on_loopback

    seen: list[str] = []

    def bind(_server: object, address: str) -> int:
        seen.append(address)
        return 1

    monkeypatch.setattr(replica, "add_port_to_grpc_server", bind)
    monkeypatch.delenv(LOOPBACK_ENV, raising=False)
    keep_replica_grpc_on_loopback()
    replica.add_port_to_grpc_server(None, "[::]:0")
    monkeypatch.setenv(LOOPBACK_ENV, "1")
    keep_replica_grpc_on_loopback()
    keep_replica_grpc_on_loopback()  # idempotent: one wrapper, not two
    replica.add_port_to_grpc_server(None, "[::]:0")
    replica.add_port_to_grpc_server(None, "10.0.0.7:0")
    assert seen == ["[::]:0", "127.0.0.1:0", "10.0.0.7:0"]


def test_haproxy_runs_the_binary_ray_serve_haproxy_binary_path_names_with_its_config_after_f() -> None:
    from ray.serve._private import haproxy

    assert "RAY_SERVE_HAPROXY_BINARY_PATH" in inspect.getsource(haproxy._resolve_haproxy_binary)
    start = inspect.getsource(haproxy.HAProxyApi)
    assert 'args = [haproxy_bin, "-db", "-f", self.config_file_path]' in start


def test_every_haproxy_bind_is_on_http_options_host_or_rewritten_to_loopback(tmp_path: Path) -> None:
    """Run the edit `modelfleet up`'s HAProxy wrapper makes on Ray's own template: afterwards every bind
    names 127.0.0.1 or the frontend host (http_options.host, 127.0.0.1 locally). A bind Ray adds on every
    interface in another form fails here."""
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    from modelfleet.haproxy import edit_config

    binds = [line for line in HAPROXY_CONFIG_TEMPLATE.splitlines() if line.strip().startswith("bind ")]
    assert len(binds) >= 3
    config = tmp_path / "haproxy.cfg"
    config.write_text("\n".join(binds) + "\n")
    edit_config(config, loopback=True, routing=None)
    for line in config.read_text().splitlines():
        address = line.strip().removeprefix("bind ")
        hosts = ("127.0.0.1:", "{{ config.frontend_host }}:", "{{ config.grpc_frontend_host }}:")
        assert address.startswith(hosts), line
