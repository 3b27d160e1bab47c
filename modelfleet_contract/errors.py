"""OpenAI's error shape, and the texts both sides answer with: the serving app's front doors, and HAProxy
where it answers for them (a body too slow to read `model` from, a model's full queue)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

# Clients are told to come back after this many seconds when a model's queue is full or its replica is gone.
RETRY_AFTER_S = 1
INVALID_REQUEST = "invalid_request_error"
OVERLOADED = "overloaded_error"
AUTHENTICATION = "authentication_error"


def no_valid_key() -> str:
    """401: the request holds none of the fleet's keys."""
    return "Missing or invalid API key: send 'Authorization: Bearer <key>'"


def error_body(
    code: int, message: str, kind: str = INVALID_REQUEST, param: str | None = None
) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`: what the openai SDKs read into their exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_json(code: int, message: str, kind: str = INVALID_REQUEST) -> str:
    return json.dumps(error_body(code, message, kind))


def body_too_slow(timeout_s: float, received: int | None = None) -> str:
    """408: the body did not arrive within limits.bodyTimeoutSeconds (HAProxy cannot say how much did)."""
    text = f"The request body did not arrive within {timeout_s:g} s (limits.bodyTimeoutSeconds)"
    return f"{text}: {received} bytes received." if received is not None else f"{text}."


def body_too_large(limit: int, size: int) -> str:
    """413: the body is over limits.maxRequestBytes."""
    return (
        f"The request body is larger than this fleet's limit of {limit} bytes (limits.maxRequestBytes): "
        f"{size} bytes or more."
    )


def overloaded(retry_after_s: int | str = RETRY_AFTER_S) -> str:
    """503: a model's queue is full (HAProxy passes the Retry-After it got as a log-format expression)."""
    return f"The model is overloaded (its queue is full), retry in {retry_after_s}s."


def unknown_model(model: str | None, known: Iterable[str]) -> str:
    """404: a name no model, adapter or alias of the fleet has."""
    return f"The model '{model}' does not exist. Known models: {', '.join(sorted(known))}."
