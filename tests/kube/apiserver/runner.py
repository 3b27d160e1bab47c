"""Run the emulator on 127.0.0.1 in a background thread, with a kubeconfig pointing at it."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kmock
import yaml

from tests.kube.apiserver.emulator import ApiServerEmulator
from tests.kube.apiserver.registry import default_crd_paths, load_crds

_START_TIMEOUT = 30.0


def write_kubeconfig(path: pathlib.Path, url: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "emulator",
        "preferences": {},
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
            }
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@dataclass
class ApiServer:
    """A running emulator: `url`, `kubeconfig_path`, and the live `emulator` for assertions."""

    crds: list[dict[str, Any]]
    port: int = 0
    url: str = ""
    kubeconfig_path: pathlib.Path = field(default_factory=pathlib.Path)
    emulator: ApiServerEmulator | None = None
    loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _http_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _error: BaseException | None = None

    def start(self, kubeconfig_dir: pathlib.Path) -> None:
        self._thread = threading.Thread(target=self._run, name="apiserver-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"the API server emulator did not start: {self._error!r}")
        self.kubeconfig_path = kubeconfig_dir / "kubeconfig"
        write_kubeconfig(self.kubeconfig_path, self.url)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have ended on its own already
                self.loop.call_soon_threadsafe(self._request_stop)
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)
        if self._error is not None:
            raise RuntimeError(f"the API server emulator crashed: {self._error!r}") from self._error

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the server's loop (the store is not thread-safe) and return its result."""
        assert self.loop is not None

        async def invoke() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), self.loop).result(_START_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the starting thread
            self._error = exc
            self._ready.set()

    def outage(self) -> contextlib.AbstractContextManager[None]:
        """Stop serving HTTP (connections refused) inside the block; the stored objects survive, as
        etcd's do when a kube-apiserver restarts."""
        return _outage(self)

    def _request_stop(self) -> None:
        assert self._stop is not None
        self._stop.set()
        self._changed.set()

    def _toggle_http(self, up: bool) -> None:
        assert self.loop is not None

        def toggle() -> None:
            (self._http_wanted.set if up else self._http_wanted.clear)()
            self._changed.set()

        self.loop.call_soon_threadsafe(toggle)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._http_wanted = asyncio.Event()
        self._http_wanted.set()
        self.emulator = ApiServerEmulator(crds=self.crds)
        async with self.emulator:
            while not self._stop.is_set():
                if self._http_wanted.is_set():
                    async with kmock.Server(self.emulator, host="127.0.0.1", port=self.port or None) as srv:
                        self.url = str(srv.url).rstrip("/")
                        self.port = urllib.parse.urlparse(self.url).port or self.port
                        self._ready.set()
                        await self._until_changed()
                        self.emulator.store.end_watches()  # or the server waits for them to end
                else:
                    await self._until_changed()

    async def _until_changed(self) -> None:
        assert self._stop is not None
        stop = asyncio.ensure_future(self._stop.wait())
        changed = asyncio.ensure_future(self._changed.wait())
        await asyncio.wait({stop, changed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stop, changed):
            task.cancel()
        self._changed.clear()


@contextlib.contextmanager
def _outage(server: ApiServer) -> Iterator[None]:
    server._toggle_http(up=False)
    _wait_port(server.port, listening=False)
    try:
        yield
    finally:
        server._toggle_http(up=True)
        _wait_port(server.port, listening=True)


def _wait_port(port: int, *, listening: bool) -> None:
    """Wait (bounded) until 127.0.0.1:port accepts connections, or refuses them."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1)
            if (sock.connect_ex(("127.0.0.1", port)) == 0) == listening:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not {'open' if listening else 'close'} in time")


@contextlib.contextmanager
def running_apiserver(
    crd_paths: list[pathlib.Path] | None = None, *, kuberay: bool = True, port: int = 0
) -> Iterator[ApiServer]:
    """An emulated API server with the given CRDs (plus KubeRay's, unless `kuberay=False`)."""
    paths = [p for p in (crd_paths or []) if p.exists()]
    crds = load_crds((default_crd_paths() if kuberay else []) + paths)
    server = ApiServer(crds=crds, port=port)
    with tempfile.TemporaryDirectory(prefix="apiserver-") as tmp:
        server.start(pathlib.Path(tmp))
        try:
            yield server
        finally:
            server.stop()
