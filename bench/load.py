"""The client load: streaming chat completions from N concurrent async workers, measured per request.

One fixed prompt and a fixed output length (`max_tokens` with `ignore_eos`), so every server does the
same work per request. TTFT is the first chunk carrying content; latency ends at `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.stats import ms, percentile

PROMPT = "Write a short story about a fleet of ships crossing a calm sea at night."
MAX_TOKENS = 32


@dataclass
class Sample:
    ok: bool
    ttft_s: float | None = None
    latency_s: float | None = None
    output_tokens: int = 0
    error: str | None = None


@dataclass
class CellResult:
    concurrency: int
    duration_s: float
    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        good = [s for s in self.samples if s.ok]
        ttft = [s.ttft_s for s in good if s.ttft_s is not None]
        latency = [s.latency_s for s in good if s.latency_s is not None]
        errors = [s.error for s in self.samples if not s.ok]
        return {
            "concurrency": self.concurrency,
            "requests": len(self.samples),
            "errors": len(errors),
            "error_examples": sorted({e for e in errors if e})[:3],
            "duration_s": round(self.duration_s, 3),
            "requests_per_s": round(len(good) / self.duration_s, 3),
            "output_tokens_per_s": round(sum(s.output_tokens for s in good) / self.duration_s, 2),
            "ttft_p50_ms": ms(percentile(ttft, 50)),
            "ttft_p99_ms": ms(percentile(ttft, 99)),
            "latency_p50_ms": ms(percentile(latency, 50)),
            "latency_p99_ms": ms(percentile(latency, 99)),
        }


def chat_body(model: str, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Sample:
    """One streaming chat request; never raises, a failure is a Sample with ok=False."""
    started = time.perf_counter()
    ttft: float | None = None
    content_chunks = 0
    usage_tokens: int | None = None
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")[:200]
                return Sample(ok=False, error=f"HTTP {response.status_code}: {text}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage_tokens = chunk["usage"].get("completion_tokens")
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        content_chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - started
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        return Sample(ok=False, error=f"{type(error).__name__}: {error}"[:200])
    tokens = usage_tokens if usage_tokens is not None else content_chunks
    if ttft is None or tokens == 0:
        return Sample(ok=False, error="stream ended without content")
    return Sample(ok=True, ttft_s=ttft, latency_s=time.perf_counter() - started, output_tokens=tokens)


def make_client(concurrency: int, timeout_s: float = 300) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    return httpx.AsyncClient(limits=limits, timeout=timeout_s)


async def run_cell(
    url: str,
    model: str,
    *,
    concurrency: int,
    duration_s: float,
    bodies: Callable[[], dict[str, Any]] | None = None,
    on_measure: Callable[[], object] | None = None,
) -> CellResult:
    """Warm up with one request per worker (not counted), then load for `duration_s`.

    Every request sends `chat_body(model)`, or a fresh `bodies()` when given (bench/prefix.py varies the
    prompt). `on_measure` is called when the warm-up is over (bench/serving.py snapshots the server's CPU
    time there). Workers stop starting requests at the deadline; the cell ends when the last one finishes,
    and throughput divides by that whole time, so a slow tail is not hidden.
    """
    body = chat_body(model)
    next_body = bodies or (lambda: body)
    async with make_client(concurrency) as client:
        await asyncio.gather(*(stream_chat(client, url, next_body()) for _ in range(concurrency)))
        samples: list[Sample] = []
        if on_measure is not None:
            on_measure()
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                samples.append(await stream_chat(client, url, next_body()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return CellResult(concurrency, time.perf_counter() - started, samples)
