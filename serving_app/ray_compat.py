"""Every part of Ray's private API the serving app uses, in one place.

Ray Serve LLM's public face (`ray.serve.llm`) builds an OpenAI app from a config, but a fleet needs to change
how that app answers: its own errors, aliases, adapters from a fleet's list, auth and limits in front of the
model's own server, the first token without a fixed delay. Those hooks exist only in Ray's private packages
(`ray.llm._internal`, `ray.serve._private`). Nothing else imports them (tests/unit/test_layering.py holds
that), so a Ray upgrade has one file to read. Each use, the test that fails when Ray changes the behaviour we
rely on (in tests/unit/test_ray_private_api.py unless named), and the public hook that would retire it:

- `OpenAiIngress`, `make_fastapi_ingress`, `init`, `DEFAULT_ENDPOINTS`: the OpenAI ingress Ray builds;
  FleetIngress (ingress.py) overrides `_get_model_id` (aliases, adapters by name, a 404 listing the fleet's
  names), `_get_configured_serve_handle` (an adapter to its model's handle) and `_get_response` (OpenAI-shaped
  503s, an SSE error mid-stream). Pinned by the ingress tests, and the serving tests' answers.
  Upstream: an ingress class option of `build_openai_app` with `resolve_model` and `on_error` hooks.
- `_build_direct_streaming_llm_deployment`, `LLMRouter`, `RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING`:
  high-throughput mode per model application (Ray builds it only for a whole OpenAI app). Pinned by
  test_the_request_router_is_built_as_the_direct_app_builds_it and the knob-name pin.
  Upstream: `build_llm_deployment(..., direct_streaming=True)`.
- `LLMRouter._pick_replica` (overridden in app.py, no import needed): a pick waiting for a replica sends a
  counted request beside it, so a model at zero wakes (Ray's unreserved pick is not counted as queued).
  Pinned by test_the_router_picks_through_the_method_fleet_request_router_wraps_and_that_pick_is_not_counted.
  Upstream: `choose_replica(_reserve=False)` counting its wait as a queued request.
- `LLMServer._batch_output_stream` (overridden in server.py, no import needed): the first streamed chunk at
  once, the rest batched (Ray's default holds the first one for its 50 ms window). Pinned by
  test_a_streamed_chat_goes_through_the_batching_hook_fleet_llm_server_overrides (behaviour: first chunk
  before the window). Upstream: a `first_chunk_immediately` batching option.
- `ChatCompletionRequest`, `ChatCompletionResponse`, `ModelCard`, `to_model_metadata`: OpenAI models Ray
  re-exports from vLLM, for `/v1/infer` and `/v1/models`. Upstream: exporting them from `ray.serve.llm`.
- `DiskMultiplexConfig`: how a model server loads a LoRA adapter from the fleet's own list (adapters.py).
  Pinned by test_the_model_server_loads_adapters_through_the_loader_hook_fleet_llm_server_fills.
  Upstream: a `lora_config.adapter_sources` mapping in LLMConfig.
- `CallbackBase`: engine-start callbacks, to skip the per-node download for a local checkpoint
  (callbacks.py). Pinned by test_a_local_checkpoint_skips_the_node_download (behaviour).
  Upstream: exporting `CallbackBase` from `ray.serve.llm` (LLMConfig already takes the class path).
- `replica_module()`: `ray.serve._private.replica`, where each replica opens its inter-deployment gRPC server
  on every interface (loopback.py rebinds it on a laptop). Pinned by the two gRPC bind tests.
  Upstream: a bind-host setting for that server.
- Ray's environment knobs the operator and `modelfleet up` set (RAY_SERVE_ENABLE_HA_PROXY and the HAProxy
  paths and ports, RAY_SERVE_THROUGHPUT_OPTIMIZED, RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING, ...) are read by
  Ray's private constants modules: test_every_ray_knob_we_set_is_one_ray_reads checks each is read.
"""

from __future__ import annotations

from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.llm._internal.serve.constants import RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ModelCard,
    to_model_metadata,
)
from ray.llm._internal.serve.core.ingress.builder import _build_direct_streaming_llm_deployment
from ray.llm._internal.serve.core.ingress.ingress import (
    DEFAULT_ENDPOINTS,
    OpenAiIngress,
    init,
    make_fastapi_ingress,
)
from ray.llm._internal.serve.core.ingress.router import LLMRouter

__all__ = [
    "DEFAULT_ENDPOINTS",
    "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING",
    "CallbackBase",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "DiskMultiplexConfig",
    "LLMRouter",
    "ModelCard",
    "OpenAiIngress",
    "_build_direct_streaming_llm_deployment",
    "init",
    "make_fastapi_ingress",
    "replica_module",
    "to_model_metadata",
]


def replica_module() -> object:
    """Ray Serve's replica module (see the module docstring), imported on demand: only a local fleet's
    replicas need it."""
    from ray.serve._private import replica

    return replica
