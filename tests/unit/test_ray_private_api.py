"""The parts of Ray Serve LLM's private API (`ray.llm._internal`) the serving app overrides or relies on.

An import that moves fails loudly by itself; an overridden method that Ray renames, or a call Ray stops
making, would fail silently (our override simply never runs). These pins fail on the next Ray version that
changes them, naming what to look at."""

from __future__ import annotations

import inspect

from ray.llm._internal.serve.core.ingress import ingress
from ray.llm._internal.serve.core.ingress.utils import _apply_openai_json_format
from ray.serve.llm import LLMServer

from serving_app.ingress import FleetIngress


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
