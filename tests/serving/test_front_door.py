"""The front door on a real fleet, both data paths: several API keys and their rotation, request limits, and
a client too slow to send its body. Driven with the `openai` SDK where a client would use it, and with a raw
socket where only a misbehaving client can show the behaviour."""

from __future__ import annotations

import json
import secrets
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelfleet.localray import wait_for
from tests.serving.fleetspec import ALWAYS_ON, API_KEY, KEY_FILES, LIMITS, TEAM_KEY, Fleet, write_secrets

PREFIXES = ["", f"/{ALWAYS_ON}"]
ROTATED: list[str] = []  # keys the rotation test used, for the leak scan
HELLO = [{"role": "user", "content": "Hello"}]


def models_status(fleet: Fleet, prefix: str, key: str) -> int:
    """GET /v1/models with `key`: a call that needs the key but no engine work."""
    return httpx.get(
        f"{fleet.url}{prefix}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ).status_code


def replica_pids(fleet: Fleet) -> dict[str, Any]:
    """Every RUNNING replica of the fleet and its process id."""
    return {
        r["replica_id"]: r.get("pid")
        for app in fleet.applications().values()
        for dep in app["deployments"].values()
        for r in dep["replicas"]
        if r["state"] == "RUNNING"
    }


@pytest.mark.parametrize("prefix", PREFIXES, ids=["unified", "prefix"])
def test_each_key_works_and_a_rotated_key_applies_without_a_restart(fleet: Fleet, prefix: str) -> None:
    before = replica_pids(fleet)
    for key in (API_KEY, TEAM_KEY):
        reply = fleet.client(prefix, api_key=key).chat.completions.create(
            model=ALWAYS_ON, messages=HELLO, max_tokens=4, temperature=0
        )
        assert reply.choices[0].message.content is not None
    rotated = f"sk-rotated-{secrets.token_hex(16)}"
    ROTATED.append(rotated)
    started = time.monotonic()
    write_secrets(fleet.secrets_dir, {"team-b/key": rotated})
    try:
        wait_for(
            "the rotated key to replace the old one",
            lambda: (
                models_status(fleet, prefix, TEAM_KEY) == 401 and models_status(fleet, prefix, rotated) == 200
            ),
            timeout_s=30,
            every_s=0.2,
        )
        print(f"\nrotation applied in {time.monotonic() - started:.1f} s ({prefix or 'unified'})")
        assert models_status(fleet, prefix, API_KEY) == 200  # the other client is untouched
        with pytest.raises(openai.AuthenticationError) as refused:
            fleet.client(prefix, api_key=TEAM_KEY).models.list()
        assert refused.value.status_code == 401
    finally:
        write_secrets(fleet.secrets_dir, KEY_FILES)
        wait_for(
            "the original key back",
            lambda: models_status(fleet, prefix, TEAM_KEY) == 200,
            timeout_s=30,
            every_s=0.2,
        )
    assert replica_pids(fleet) == before, "a key rotation must not restart replicas"


@pytest.mark.parametrize("prefix", PREFIXES, ids=["unified", "prefix"])
def test_limits_are_refused_in_openai_shape_naming_the_limit(fleet: Fleet, prefix: str) -> None:
    client = fleet.client(prefix)
    too_many_tokens = LIMITS["maxTokens"] + 1
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=ALWAYS_ON, messages=HELLO, max_tokens=too_many_tokens)
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "max_tokens", error
    assert f"max_tokens is {too_many_tokens}" in error["message"] and "limits.maxTokens" in error["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=ALWAYS_ON, prompt="Hi", max_tokens=4, n=LIMITS["maxN"] + 1)
    assert "limits.maxN" in str(refused.value)
    big = [{"role": "user", "content": "x" * (LIMITS["maxRequestBytes"] + 1)}]
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=ALWAYS_ON, messages=big, max_tokens=4)
    assert refused.value.status_code == 413 and "limits.maxRequestBytes" in str(refused.value)
    # Nothing of it reached the model: it still answers.
    reply = client.chat.completions.create(model=ALWAYS_ON, messages=HELLO, max_tokens=4, temperature=0)
    assert reply.choices[0].finish_reason in ("length", "stop")


@pytest.mark.parametrize("prefix", PREFIXES, ids=["unified", "prefix"])
def test_limits_hold_when_the_client_leaves_a_field_out_or_sends_what_no_limit_names(
    fleet: Fleet, prefix: str
) -> None:
    client = fleet.client(prefix)
    # No max_tokens, and told to ignore the end of text: the engine stops at limits.maxTokens, not at the
    # end of the model's context (256 tokens here).
    reply = client.chat.completions.create(
        model=ALWAYS_ON, messages=HELLO, extra_body={"ignore_eos": True}, temperature=0
    )
    assert reply.usage is not None and reply.usage.completion_tokens == LIMITS["maxTokens"]
    assert reply.choices[0].finish_reason == "length"
    # A prompt list over limits.maxBatchItems (2048 by default), and a body nested past any schema.
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=ALWAYS_ON, prompt=["Hi"] * 2049, max_tokens=1)
    assert "prompt lists 2049 inputs" in str(refused.value) and "limits.maxBatchItems" in str(refused.value)
    deep = httpx.post(
        f"{fleet.url}{prefix}/v1/chat/completions",
        content=b"[" * 5000,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert deep.status_code == 400 and deep.json()["error"]["param"] == "body", deep.text


@pytest.mark.parametrize("prefix", PREFIXES, ids=["unified", "prefix"])
def test_only_the_fleets_endpoints_are_served(fleet: Fleet, prefix: str) -> None:
    """vLLM's own app (a model's front door in high-throughput mode) has more routes than the fleet offers
    and its limits cover; they answer 404 like on the standard path."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": ALWAYS_ON, "input": "Hi", "max_output_tokens": 100000}
    for path in ("/v1/responses", "/v1/messages", "/inference/v1/generate", "/tokenize", "/docs"):
        reply = httpx.post(f"{fleet.url}{prefix}{path}", json=body, headers=headers, timeout=30)
        assert reply.status_code in (404, 405), (path, reply.status_code, reply.text[:200])
    assert models_status(fleet, prefix, API_KEY) == 200


def trickle(fleet: Fleet, prefix: str, deadline_s: float) -> tuple[bytes, float, bool]:
    """A client that sends its headers, then its body one byte a second. Returns (what the server sent,
    seconds until the server closed or the deadline, whether the server closed the connection)."""
    url = urllib.parse.urlparse(fleet.url)
    body = json.dumps({"model": ALWAYS_ON, "messages": HELLO, "max_tokens": 4}).encode()
    head = (
        f"POST {prefix}/v1/chat/completions HTTP/1.1\r\nHost: {url.hostname}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    received = b""
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=1.0) as sock:
        sock.sendall(head)
        sent = 0
        while time.monotonic() - started < deadline_s:
            try:
                if sent < len(body):
                    sock.sendall(body[sent : sent + 1])
                    sent += 1
                chunk = sock.recv(65536)  # waits up to 1 s: the client's pace
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return received, time.monotonic() - started, True
            if not chunk:
                return received, time.monotonic() - started, True
            received += chunk
    return received, time.monotonic() - started, False


@pytest.mark.parametrize("prefix", PREFIXES, ids=["unified", "prefix"])
def test_a_client_trickling_its_body_is_cut_off_and_the_model_keeps_serving(
    fleet: Fleet, prefix: str
) -> None:
    timeout_s = float(LIMITS["bodyTimeoutSeconds"])
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(trickle, fleet, prefix, timeout_s + 30)
        # Meanwhile everyone else is served.
        for _ in range(3):
            reply = fleet.client(prefix).chat.completions.create(
                model=ALWAYS_ON, messages=HELLO, max_tokens=4, temperature=0
            )
            assert reply.choices[0].finish_reason in ("length", "stop")
        received, elapsed, closed = slow.result()
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 408"), (status_line, received[-300:])
    assert b"limits.bodyTimeoutSeconds" in received
    assert closed and elapsed < timeout_s + 10, f"cut off after {elapsed:.1f} s, closed={closed}"


def pieces(key: str, size: int = 8) -> set[str]:
    """Every `size`-character piece of a key's random part."""
    random = key.rsplit("-", 1)[-1]
    return {random[i : i + size] for i in range(len(random) - size + 1)}


def test_no_piece_of_any_key_is_in_logs_status_config_or_metrics(fleet: Fleet) -> None:
    """After the tests above sent right, wrong and rotated keys: nothing a user or operator can read holds any
    part of a key (Ray's and Serve's logs, the fleet's status, the deployed Serve config, the scrape)."""
    wanted = set().union(*(pieces(k) for k in (API_KEY, TEAM_KEY, *ROTATED)))
    head = fleet.local.head
    texts = {
        "status": fleet.status().model_dump_json(),
        "serve config": json.dumps(head.request("GET", "/api/serve/applications/")),
        "metrics": httpx.get(str(head.metrics_url), timeout=30).text,
    }
    logs = [p for p in Path(head.root).rglob("*") if p.is_file() and "logs" in p.parts]
    assert logs, f"no Ray logs under {head.root}"
    for path in logs:
        texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    leaks = {where: sorted(p for p in wanted if p in text)[:3] for where, text in texts.items()}
    assert not {where: found for where, found in leaks.items() if found}
