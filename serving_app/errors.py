"""Errors in OpenAI's shape, and startup failures short enough to read in a status line.

Clients of an OpenAI-compatible endpoint branch on the HTTP status and read ``error.message``; the
SDKs turn 401/404/400/503 into typed exceptions. So every error we raise ourselves becomes a
``FleetHTTPError`` rendered as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import re

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from modelfleet_contract.errors import INVALID_REQUEST, error_body
from serving_app.metrics import error_reason, note_error

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_MESSAGE = 400


class FleetHTTPError(Exception):
    """An error the ingress answers with directly, in OpenAI's shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.headers = headers or {}


def error_response(exc: FleetHTTPError) -> JSONResponse:
    note_error(error_reason(exc.status_code))
    body = error_body(exc.status_code, exc.message, exc.type, exc.param)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def handle_fleet_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FleetHTTPError)
    return error_response(exc)


async def handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """A body that does not fit the endpoint's schema: 400 naming the field, as OpenAI does (``param`` is the
    field's name). Ray Serve LLM's own handler puts the offending value into ``param``, which fails to
    render for values JSON cannot carry (``-Infinity``): a 500 found by tests/serving/test_fuzz.py."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = f"Invalid request: {first.get('msg', 'the body does not fit the schema')}"
    return error_response(FleetHTTPError(400, f"{message} (at {where or 'body'})", param=where or None))


def one_line(exc: BaseException) -> str:
    """The innermost meaningful message of ``exc``: no ANSI codes, no traceback, bounded length.

    Engine start failures arrive wrapped several times (vLLM's engine core, Ray Serve LLM's
    server); the root cause is what an operator needs on the status line.
    """
    root: BaseException = exc
    while True:
        nxt = root.__cause__ or root.__context__
        if nxt is None or nxt is root:
            break
        root = nxt
    text = f"{type(exc).__name__}: {exc}"
    # Wrappers often repeat the root cause's text; add the root only when it says something new.
    if root is not exc and str(root) not in str(exc):
        text += f" (caused by {type(root).__name__}: {root})"
    text = _ANSI.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


class ModelStartupError(RuntimeError):
    """A model's engine failed to start; the message is already short and clean."""
