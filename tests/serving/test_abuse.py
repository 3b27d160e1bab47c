"""What users fear, on the real serving path (both data paths): more requests at once than a model can hold,
and a model replica killed in the middle of its streams."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import psutil
import pytest

from modelfleet.localray import wait_for
from serving_app.server import server_deployment_name
from tests.serving.fleetspec import ALWAYS_ON, API_KEY, CAPACITY, LIMITS, MAX_ONGOING, SLEEPY, Fleet

PREFIXES = ["", f"/{ALWAYS_ON}"]
HELLO = [{"role": "user", "content": "Hello"}]
# Long enough answers that requests overlap: exactly this many tokens each. A wave of MAX_ONGOING of them
# takes seconds on the tiny model, longer than the overload test's requests take to arrive (sent at once).
LONG = {"max_tokens": 160, "min_tokens": 160, "ignore_eos": True}
# The requests that fill the engine first: as long as the fleet's limits allow.
HOLD = {"max_tokens": LIMITS["maxTokens"], "min_tokens": LIMITS["maxTokens"], "ignore_eos": True}


@dataclass
class Outcome:
    status: int
    seconds_to_status: float
    retry_after: str | None
    body: str


def stream_once(
    client: httpx.Client, url: str, length: dict[str, Any], started_event: threading.Barrier | None = None
) -> Outcome:
    """One streamed chat; ``started_event`` is waited on once its first chunk (or its refusal) is in."""
    started = time.monotonic()
    body = {"model": ALWAYS_ON, "messages": HELLO, "stream": True, **length}
    with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {API_KEY}"}) as reply:
        status_s = time.monotonic() - started
        chunks = reply.iter_bytes()
        first = next(chunks, b"")
        if started_event is not None:
            started_event.wait()
        text = (first + b"".join(chunks)).decode()
    return Outcome(reply.status_code, status_s, reply.headers.get("retry-after"), text)


@pytest.mark.parametrize("prefix", PREFIXES, ids=["unified", "prefix"])
def test_overload_gets_quick_503s_with_retry_after_and_the_rest_succeed(fleet: Fleet, prefix: str) -> None:
    before = [r["pid"] for r in fleet.server_replicas()]
    url = f"{fleet.url}{prefix}/v1/chat/completions"
    # First the engine is filled (MAX_ONGOING long streams, each past its first chunk), then the rest of the
    # capacity (the queue) plus 40 more arrive at once. Sent all together, the first answers could end while
    # a busy 2-core box was still taking the last requests in, freeing room: the overload would not happen.
    burst = CAPACITY - MAX_ONGOING + 40
    sent = MAX_ONGOING + burst
    limits = httpx.Limits(max_connections=sent, max_keepalive_connections=sent)
    holding = threading.Barrier(MAX_ONGOING + 1, timeout=120)
    together = threading.Barrier(burst, timeout=60)

    def hold(_: int) -> Outcome:
        return stream_once(client, url, HOLD, started_event=holding)

    def send(_: int) -> Outcome:
        together.wait()
        return stream_once(client, url, LONG)

    started = time.monotonic()
    with httpx.Client(limits=limits, timeout=120) as client, ThreadPoolExecutor(sent) as pool:
        holders = pool.map(hold, range(MAX_ONGOING))
        holding.wait()  # every holder has its first chunk: the engine is full
        outcomes = list(pool.map(send, range(burst))) + list(holders)
    elapsed = time.monotonic() - started
    codes = Counter(o.status for o in outcomes)
    refused = [o for o in outcomes if o.status == 503]
    served = [o for o in outcomes if o.status == 200]
    slowest_refusal = max((o.seconds_to_status for o in refused), default=0.0)
    print(
        f"\noverload {prefix or '/'}: {MAX_ONGOING} running, then {burst} at once, capacity {CAPACITY}: "
        f"{dict(codes)} in {elapsed:.1f} s; 503s answered within {slowest_refusal:.2f} s"
    )
    assert set(codes) <= {200, 503}, codes  # nothing else, and (pool.map returned) nothing hung
    assert len(served) >= CAPACITY and len(refused) >= (sent - CAPACITY) // 2, codes
    for outcome in refused:
        assert outcome.retry_after is not None and int(outcome.retry_after) >= 1, outcome
        if fleet.high_throughput and prefix:
            # HAProxy sends a model's prefix straight to its server replica, and Serve refuses there itself
            # before any code of ours runs: plain text (with our backpressure_config's Retry-After).
            assert outcome.body.startswith("Request dropped due to backpressure"), outcome.body[:300]
        else:
            assert json.loads(outcome.body)["error"]["type"] == "overloaded_error", outcome.body[:300]
    assert slowest_refusal < 5.0
    for outcome in served:  # every accepted stream ran to its end
        assert outcome.body.rstrip().endswith("data: [DONE]"), outcome.body[-300:]
    assert [r["pid"] for r in fleet.server_replicas()] == before, "the overload must not restart the replica"
    reply = fleet.client(prefix).chat.completions.create(model=ALWAYS_ON, messages=HELLO, max_tokens=4)
    assert reply.choices[0].finish_reason in ("length", "stop")


def test_a_replica_killed_mid_stream_ends_its_streams_with_an_error_and_comes_back(fleet: Fleet) -> None:
    (replica,) = fleet.server_replicas()
    pid = int(str(replica["pid"]))
    engines = {p.pid for p in psutil.Process(pid).children(recursive=True)}
    client = fleet.client(api_key=API_KEY).with_options(timeout=60)
    streams = [
        client.chat.completions.create(
            model=ALWAYS_ON, messages=HELLO, stream=True, max_tokens=200, extra_body={"min_tokens": 200}
        )
        for _ in range(3)
    ]
    for stream in streams:  # every stream has started...
        next(iter(stream))
    os.kill(pid, signal.SIGKILL)  # ...when its replica dies
    killed = time.monotonic()
    errors: list[BaseException | None] = [None] * len(streams)

    def drain(index: int) -> None:
        try:
            for _ in streams[index]:
                pass
        except Exception as exc:  # what the SDK surfaces to the application
            errors[index] = exc

    readers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(len(streams))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=90)
    assert not any(r.is_alive() for r in readers), "a stream hung after its replica died"
    ended = time.monotonic() - killed
    print(f"\nstreams ended {ended:.1f} s after the kill: {[type(e).__name__ for e in errors]}")
    assert all(isinstance(e, openai.APIError | httpx.HTTPError) for e in errors), errors

    seen: list[str] = []

    def alpha_state() -> str:
        state = next(m.state for m in fleet.status().models if m.name == ALWAYS_ON)
        if not seen or seen[-1] != state:
            seen.append(state)
        return state

    wait_for(
        "the fleet to notice the dead replica", lambda: alpha_state() != "Ready", timeout_s=60, every_s=0.2
    )
    wait_for("Serve to replace the replica", lambda: alpha_state() == "Ready", timeout_s=600, every_s=1)
    print(f"alpha's states after the kill: {seen}, Ready again after {time.monotonic() - killed:.0f} s")
    assert seen[-1] == "Ready" and set(seen[:-1]) - {"Ready"} <= {"Deploying", "Unhealthy"}, seen
    assert set(seen) - {"Ready"}, seen
    (new,) = fleet.server_replicas()
    assert new["pid"] != pid
    reply = client.chat.completions.create(model=ALWAYS_ON, messages=HELLO, max_tokens=4)
    assert reply.choices[0].finish_reason in ("length", "stop")
    # The dead replica's engine processes went with it.
    wait_for(
        "the dead replica's engine to exit",
        lambda: not any(psutil.pid_exists(p) for p in engines),
        timeout_s=60,
    )


def _at_zero(fleet: Fleet, model: str) -> bool:
    return fleet.replicas(model, server_deployment_name(model)) == (0, 0)


# On the default path: the standard path's answer to each kind of bad request is covered by test_fuzz.py here
# and by the fake-engine tier.
@pytest.mark.default_path_only
def test_a_thousand_mixed_requests_good_ones_all_succeed_bad_ones_all_4xx(fleet: Fleet) -> None:
    """1,000 requests at concurrency 32, as applications send them: chat, streamed chat, completions and
    /v1/infer on both endpoints, a sleeping model woken by the first of its requests, and bad ones (unknown
    model, wrong key, over a limit, malformed JSON, invalid schema). Good requests go through the `openai`
    SDK with its default retries (it honours the 503's Retry-After, as applications do)."""
    wait_for(f"{SLEEPY} at zero replicas", lambda: _at_zero(fleet, SLEEPY), timeout_s=120, every_s=1)
    statuses: Counter[int] = Counter()
    hooks = {"response": [lambda response: statuses.update([response.status_code])]}
    http = httpx.Client(event_hooks=hooks, limits=httpx.Limits(max_connections=64), timeout=600)
    unified = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=API_KEY, http_client=http)
    prefix = openai.OpenAI(base_url=f"{fleet.url}/{ALWAYS_ON}/v1", api_key=API_KEY, http_client=http)
    raw = httpx.Client(limits=httpx.Limits(max_connections=64), timeout=60)
    chat_url = f"{fleet.url}/v1/chat/completions"

    def chat(client: openai.OpenAI, model: str = ALWAYS_ON) -> None:
        reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=6)
        assert reply.choices[0].finish_reason in ("length", "stop")

    def stream(client: openai.OpenAI) -> None:
        chunks = list(
            client.chat.completions.create(model=ALWAYS_ON, messages=HELLO, max_tokens=6, stream=True)
        )
        assert chunks and chunks[-1].choices[0].finish_reason in ("length", "stop")

    def complete(client: openai.OpenAI) -> None:
        assert (
            client.completions.create(model=ALWAYS_ON, prompt="Hi", max_tokens=6).choices[0].text is not None
        )

    def infer() -> None:
        assert fleet.infer(ALWAYS_ON, max_tokens=6).status_code == 200

    def bad(body: object = None, content: bytes | None = None, key: str = API_KEY) -> int:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if content is None:
            return raw.post(chat_url, json=body, headers=headers).status_code
        return raw.post(chat_url, content=content, headers=headers).status_code

    good = {
        "wake-sleepy": lambda: chat(unified, SLEEPY),
        "chat-unified": lambda: chat(unified),
        "chat-prefix": lambda: chat(prefix),
        "stream-unified": lambda: stream(unified),
        "stream-prefix": lambda: stream(prefix),
        "completions": lambda: complete(unified),
        "infer": infer,
    }
    expected_bad = {
        "unknown-model": (lambda: bad({"model": "nope", "messages": HELLO}), 404),
        "wrong-key": (lambda: bad({"model": ALWAYS_ON, "messages": HELLO}, key="sk-wrong"), 401),
        "over-limit": (lambda: bad({"model": ALWAYS_ON, "messages": HELLO, "max_tokens": 10_000}), 400),
        "malformed-json": (lambda: bad(content=b'{"model": "alpha", "messages": ['), 400),
        "invalid-schema": (lambda: bad({"model": ALWAYS_ON, "messages": "not a list"}), 400),
    }
    rng = random.Random(1000)
    kinds = ["wake-sleepy"] * 4 + [
        rng.choice(list(good) * 3 + list(expected_bad)) if i % 8 else "wake-sleepy" for i in range(996)
    ]
    outcomes: dict[str, Counter[str]] = {kind: Counter() for kind in [*good, *expected_bad]}

    def run(kind: str) -> None:
        if kind in good:
            try:
                good[kind]()
                outcomes[kind]["ok"] += 1
            except Exception as exc:  # a failed good request, recorded by type
                outcomes[kind][f"failed: {type(exc).__name__}: {str(exc)[:120]}"] += 1
        else:
            call, want = expected_bad[kind]
            got = call()
            outcomes[kind]["4xx as expected" if got == want else f"got {got}, wanted {want}"] += 1

    started = time.monotonic()
    with http, raw, ThreadPoolExecutor(32) as pool:
        list(pool.map(run, kinds))
    elapsed = time.monotonic() - started
    print(
        f"\n{len(kinds)} mixed requests at concurrency 32 in {elapsed:.0f} s; HTTP statuses seen by the SDK:"
    )
    print(f"  {dict(statuses)}")
    for kind, counts in outcomes.items():
        print(f"  {kind:<15} {dict(counts)}")
    failures = {k: c for k, c in outcomes.items() if set(c) - {"ok", "4xx as expected"}}
    assert not failures, failures
    assert sum(sum(c.values()) for c in outcomes.values()) == len(kinds)
