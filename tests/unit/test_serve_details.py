"""The operator's read of a fleet's Serve details (modelfleet/serve_details.py) against a dashboard that
misbehaves, served on loopback: the dashboard runs on an image the fleet chooses, so whatever it answers, a
reconcile gets the details or None within its deadline and its memory, never an exception."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil
import pytest

from modelfleet.serve_details import MAX_BYTES, ServeDetails

GOOD = {
    "applications": {
        "alpha": {"status": "RUNNING", "deployments": {"d": {"replicas": [{"state": "RUNNING"}]}}}
    }
}
Answer = Callable[[BaseHTTPRequestHandler], None]


def _json(body: Any) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def _trickle(handler: BaseHTTPRequestHandler) -> None:
    """A byte every 0.2 s: each read returns well within any per-read timeout, the answer never ends."""
    handler.send_response(200)
    handler.end_headers()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.2)


def _huge(handler: BaseHTTPRequestHandler) -> None:
    """300 MB of JSON-ish bytes, no Content-Length (the end is the connection's)."""
    handler.send_response(200)
    handler.end_headers()
    chunk = b'{"applications": {' + b" " * (1 << 20)
    for _ in range(300):
        handler.wfile.write(chunk)


def _declared_huge(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(300 << 20))
    handler.end_headers()
    handler.wfile.write(b"{")


@pytest.fixture
def dashboard() -> Iterator[Callable[[Answer], str]]:
    """A loopback dashboard answering as told; gives its base URL."""
    answers: list[Answer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # The operator may stop reading: what it should do with these answers.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                answers[-1](self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(answer: Answer) -> str:
        answers.append(answer)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    server.shutdown()
    server.server_close()


def _read(url: str, timeout_s: float = 1.0) -> tuple[dict[str, Any] | None, float]:
    details = ServeDetails(timeout_s=timeout_s, backoff_s=0, url=lambda *_: url)
    started = time.monotonic()
    found = details("llm", "tiny")
    return found, time.monotonic() - started


def test_serves_details_are_read(dashboard: Callable[[Answer], str]) -> None:
    assert _read(dashboard(_json(GOOD)))[0] == GOOD


def test_a_trickling_answer_is_given_up_at_the_deadline(dashboard: Callable[[Answer], str]) -> None:
    found, took = _read(dashboard(_trickle), timeout_s=1.0)
    assert found is None and took < 2.0, took


@pytest.mark.parametrize("answer", [_huge, _declared_huge], ids=["300 MB streamed", "300 MB declared"])
def test_an_answer_over_the_size_cap_is_dropped_without_holding_it(
    dashboard: Callable[[Answer], str], answer: Answer
) -> None:
    before = psutil.Process().memory_info().rss
    found, took = _read(dashboard(answer), timeout_s=10)
    assert found is None and took < 10
    assert psutil.Process().memory_info().rss - before < 2 * MAX_BYTES


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"applications": [1]},
        {"applications": {"a": 5}},
        {"applications": {"a": {"deployments": {"d": {"replicas": "many"}}}}},
        {"applications": {"a": {"deployments": {"d": {"replicas": [7]}}}}},
        {"applications": {"a": {"deployments": ["d"]}}},
    ],
)
def test_an_answer_not_in_serves_shape_is_no_answer(dashboard: Callable[[Answer], str], body: Any) -> None:
    assert _read(dashboard(_json(body)))[0] is None


def test_json_nested_past_the_parsers_depth_is_no_answer(dashboard: Callable[[Answer], str]) -> None:
    def deep(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(b"[" * 100_000)

    assert _read(dashboard(deep))[0] is None


def test_a_silent_api_server_costs_a_reconcile_its_request_timeout_then_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API server that accepts the connection and never answers: the operator's client gives up after
    its read timeout and the reconcile asks kopf to retry, instead of holding the thread for ever."""
    import kopf
    from kubernetes.client import Configuration, CustomObjectsApi

    from modelfleet import reconcile
    from modelfleet.reconcile import Reconciler, TimedApiClient

    monkeypatch.setattr(reconcile, "REQUEST_TIMEOUT_S", (1.0, 1.0))
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(silent.accept()[0])  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    configuration = Configuration(host=f"http://127.0.0.1:{silent.getsockname()[1]}")
    reconciler = Reconciler(CustomObjectsApi(TimedApiClient(configuration)))
    fleet = {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": "t"},
        "spec": {},
    }
    started = time.monotonic()
    with pytest.raises(kopf.TemporaryError):
        reconciler.reconcile(fleet, lambda *_: None)
    assert time.monotonic() - started < 3  # one read timeout, no retry of it
    silent.close()
    for connection in held:
        connection.close()
