"""Bearer API-key auth as a small ASGI middleware; keys are read from mounted files, re-read as they change.

Keys never travel in serveConfigV2: args name files (`<secretName>/<key>`) under the directory in
``MODELFLEET_API_KEYS_DIR``. On Kubernetes that directory is a projected volume of the fleet's Secrets, which
the kubelet rewrites when a Secret changes (within about a minute); locally it is a folder of files. Each
replica re-reads the files at most every ``RELOAD_S`` seconds, so rotating a key needs no restart. A key
file that is missing or empty accepts nothing; with no usable key at all every request gets 401 (fail
closed). Keys are compared in constant time, all of them on every request.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from modelfleet_contract.errors import AUTHENTICATION, no_valid_key
from modelfleet_contract.wire import API_KEYS_DIR, API_KEYS_DIR_ENV, HEALTHZ, KEYS_RELOAD_S
from serving_app.errors import FleetHTTPError, error_response

# How stale a replica's view of the key files may be.
RELOAD_S = KEYS_RELOAD_S
# Probes must reach /healthz without the key.
OPEN_PATHS = frozenset({HEALTHZ})

log = logging.getLogger("ray.serve")


class ApiKeys:
    """The accepted keys: the named files under the keys directory, re-read at most every ``RELOAD_S``."""

    def __init__(
        self,
        files: Sequence[str],
        *,
        directory: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = list(files)
        self._directory = directory
        self._clock = clock
        self._keys: list[bytes] = []
        self._loaded_at: float | None = None
        self._unreadable: frozenset[str] = frozenset()

    @property
    def directory(self) -> Path:
        # Read where the keys are used: the app is built in one process and pickled to the replicas.
        return Path(self._directory or os.environ.get(API_KEYS_DIR_ENV) or API_KEYS_DIR)

    def current(self) -> list[bytes]:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= RELOAD_S:
            self._keys = self._read()
            self._loaded_at = now
        return self._keys

    def _read(self) -> list[bytes]:
        keys: list[bytes] = []
        unreadable: set[str] = set()
        for name in self.files:
            try:
                key = (self.directory / name).read_bytes().strip()
            except OSError:
                key = b""
            if key:
                keys.append(key)
            else:
                unreadable.add(name)
        if unreadable != self._unreadable:
            # Names only: a key's value is never logged.
            if unreadable:
                log.warning(
                    "API key files missing or empty under %s (they accept nothing): %s",
                    self.directory,
                    ", ".join(sorted(unreadable)),
                )
            else:
                log.info("all %d API key files under %s are readable", len(self.files), self.directory)
            self._unreadable = frozenset(unreadable)
        return keys

    def accepts(self, given: bytes) -> bool:
        """Whether ``given`` is one of the keys; every key is compared, so timing says nothing about which."""
        found = False
        for key in self.current():
            found |= hmac.compare_digest(given, key)
        return found


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is not None and self.keys.accepts(given):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        reason = (
            f"No API key is configured on the server (none of the {len(self.keys.files)} key files under "
            f"{API_KEYS_DIR_ENV} is readable)"
            if not self.keys.current()
            else no_valid_key()
        )
        exc = FleetHTTPError(401, reason, type=AUTHENTICATION, headers={"WWW-Authenticate": "Bearer"})
        await error_response(exc)(scope, receive, send)


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
