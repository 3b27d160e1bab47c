"""Bearer API-key auth as a small ASGI middleware.

The key never travels in serveConfigV2: args name an environment variable, which the replica reads
when it serves its first request (Kubernetes injects it from a Secret; locally it is in the
environment of ``ray start``). A missing variable fails closed: every request gets 401.
"""

from __future__ import annotations

import hmac
import os

from starlette.types import ASGIApp, Receive, Scope, Send

from serving_app.errors import FleetHTTPError, error_response

# Probes must reach /healthz without the key.
OPEN_PATHS = frozenset({"/healthz"})


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, api_key_env: str) -> None:
        self.app = app
        self.api_key_env = api_key_env

    def _expected(self) -> bytes | None:
        key = os.environ.get(self.api_key_env)
        return key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        expected = self._expected()
        given = _bearer(scope)
        if expected is None or given is None or not hmac.compare_digest(given, expected):
            reason = (
                f"API key not configured on the server ({self.api_key_env} unset)"
                if expected is None
                else "Missing or invalid API key: send 'Authorization: Bearer <key>'"
            )
            exc = FleetHTTPError(
                401, reason, type="authentication_error", headers={"WWW-Authenticate": "Bearer"}
            )
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    # Under a route prefix Serve keeps the full path in "path" and the prefix in "root_path".
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer(scope: Scope) -> bytes | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" and token.strip() else None
    return None
