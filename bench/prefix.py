"""Part 4, prefix-aware routing: the same shared-prefix load on a model with two replicas, routed by Ray
Serve's default (powerOfTwo) and by Ray Serve LLM's prefix-cache affinity router (prefixAware).

The load is what prefix routing is for: many long prompts that start with one of DOCUMENTS shared prefixes
(a system prompt, a retrieved document) and end with a short question. Each replica's KV cache holds about
two thirds of the prefixes: a replica that sees every prefix (powerOfTwo) keeps evicting them, one that
sees only its share (prefixAware) keeps them. Reported per routing and endpoint: req/s, TTFT, and vLLM's
own prefix-cache hit rate over the run (`vllm:prefix_cache_hits` / `queries`, summed over replicas).
The fleets run in high-throughput mode, as they ship: there prefix-aware routing applies on the fleet's
endpoint (`/v1`); a model's prefix is routed by load in both rows, a control for the same load.
"""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import servers
from bench.load import chat_body, run_cell

ROUTINGS = ("powerOfTwo", "prefixAware")
DOCUMENTS = 48
# ~3.4 tiny-tokenizer tokens a word: ~370-token prefixes, in the 512-token context with the question.
WORDS_PER_DOCUMENT = 105
CONCURRENCY = 8
CELL_DURATION_S = 20.0
# Long prompts need the tiny model's whole context; a small KV cache (1 KiB per token for the tiny model in
# float32) so that one replica cannot keep every prefix: 12 MiB is ~12k tokens, ~2/3 of 48 prefixes.
ENGINE_ARGS = servers.ENGINE_ARGS | {"max_model_len": 512, "kv_cache_memory_bytes": 12 * 1024 * 1024}
REPLICAS = {"min": 2, "max": 2, "targetOngoingRequests": 8, "maxOngoingRequests": 32}
_WORDS = [
    "fleet",
    "model",
    "replica",
    "cluster",
    "router",
    "engine",
    "cache",
    "prefix",
    "token",
    "request",
    "answer",
    "question",
    "ship",
    "sea",
    "night",
    "calm",
    "crossing",
    "harbour",
    "lighthouse",
    "captain",
    "crew",
    "storm",
    "wind",
    "sail",
    "anchor",
    "map",
    "star",
    "compass",
    "voyage",
    "island",
]


def _documents(seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        f"Document {i}: " + " ".join(rng.choice(_WORDS) for _ in range(WORDS_PER_DOCUMENT))
        for i in range(DOCUMENTS)
    ]


def _prefix_cache(metrics_url: str) -> tuple[float, float]:
    """(hits, queries) of vLLM's prefix cache in tokens, summed over the fleet's engines."""
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()
    found = {"ray_vllm_prefix_cache_hits_total": 0.0, "ray_vllm_prefix_cache_queries_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] += sample.value
    return found["ray_vllm_prefix_cache_hits_total"], found["ray_vllm_prefix_cache_queries_total"]


def _settled_prefix_cache(metrics_url: str, timeout_s: float = 60) -> tuple[float, float]:
    """The counters once they stop moving: Ray exports what engines recorded every ~10 s."""
    deadline = time.monotonic() + timeout_s
    last = _prefix_cache(metrics_url)
    while time.monotonic() < deadline:
        time.sleep(5)
        now = _prefix_cache(metrics_url)
        if now == last:
            return now
        last = now
    return last


def _log(message: str) -> None:
    print(f"[prefix {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(model_dir: Path, work_dir: Path, *, duration_s: float = CELL_DURATION_S) -> dict[str, Any]:
    documents = _documents()
    rng = random.Random(11)

    def body() -> dict[str, Any]:
        out = chat_body(servers.MODEL, max_tokens=8)
        question = f"Question {rng.randrange(10_000)}: what does it say?"
        out["messages"] = [
            {"role": "system", "content": rng.choice(documents)},
            {"role": "user", "content": question},
        ]
        return out

    rows = []
    for routing in ROUTINGS:
        model = {"routing": routing, "engineArgs": ENGINE_ARGS}
        with servers.modelfleet(
            model_dir, work_dir, name=f"prefix-{routing.lower()}", replicas=REPLICAS, model=model
        ) as running:
            metrics_url = running.extra["fleet"].head.metrics_url
            for endpoint in running.endpoints:
                before = _settled_prefix_cache(metrics_url)
                cell = asyncio.run(
                    run_cell(
                        endpoint.url,
                        servers.MODEL,
                        concurrency=CONCURRENCY,
                        duration_s=duration_s,
                        bodies=body,
                    )
                )
                after = _settled_prefix_cache(metrics_url)
                hits, queries = after[0] - before[0], after[1] - before[1]
                row = {
                    "routing": routing,
                    "endpoint": endpoint.path,
                    **cell.summary(),
                    "prefix_cache_hit_tokens": hits,
                    "prefix_cache_query_tokens": queries,
                    "prefix_cache_hit_rate": round(hits / queries, 3) if queries else None,
                }
                _log(
                    f"{routing:<12} {endpoint.path:<12} {row['requests_per_s']:6.1f} req/s  TTFT p50 "
                    f"{row['ttft_p50_ms']} ms p99 {row['ttft_p99_ms']} ms  prefix-cache hits "
                    f"{row['prefix_cache_hit_rate']}  errors {row['errors']} {row['error_examples'][:1]}"
                )
                rows.append(row)
    return {
        "documents": DOCUMENTS,
        "concurrency": CONCURRENCY,
        "cell_duration_s": duration_s,
        "engine_args": ENGINE_ARGS,
        "replicas": REPLICAS,
        "rows": rows,
    }
