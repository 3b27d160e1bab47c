"""Part 1, serving overhead: the same tiny model served every way, alternating A B C D E A B C D E.

Only one server runs at a time (2 cores): each round starts bare vLLM, measures it at every
concurrency, stops it, then does the same for stock Ray Serve LLM (as documented, then with Ray's
high-throughput environment) and for ModelFleet (as it ships, highThroughput on, then with it off; their
two endpoints, unified and per-model prefix, are measured back to back on the same running fleet).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import servers
from bench.cpu import cpu_seconds, processes, server_cpu_s
from bench.load import MAX_TOKENS, PROMPT, CellResult, run_cell
from bench.stats import median
from modelfleet import local

CONCURRENCY = (1, 8, 32)
ROUNDS = 2
CELL_DURATION_S = 8.0

BARE, STOCK, STOCK_HT = "bare vLLM", "stock Ray Serve LLM", "stock Ray Serve LLM (high-throughput)"
FLEETS = [
    f"{label} ({path})"
    for label in ("ModelFleet", "ModelFleet (highThroughput off)")
    for path in ("unified /v1", f"prefix /{servers.MODEL}/v1")
]
SYSTEMS = [BARE, STOCK, STOCK_HT, *FLEETS]
# What each ModelFleet row is compared with (the key names the ratio fields in serving.json).
BASELINES = ((BARE, "bare"), (STOCK, "ray_serve_llm"), (STOCK_HT, "ray_serve_llm_ht"))
RATIO_METRICS = (
    "requests_per_s",
    "output_tokens_per_s",
    "ttft_p50_ms",
    "latency_p50_ms",
    "server_cpu_ms_per_request",
)


Starter = Callable[[], contextlib.AbstractContextManager[Any]]


def _starters(model_dir: Path, work_dir: Path) -> dict[str, Starter]:
    """What to start, in round order, by name; high-throughput ones only in a private network namespace."""
    fast = local.network_is_private()
    if not fast:
        _log("no private network namespace: high-throughput systems skipped (see scripts/private-net.sh)")
    starters: dict[str, Starter] = {
        "bare-vllm": lambda: servers.bare_vllm(model_dir, work_dir),
        "ray-serve-llm": lambda: servers.stock_ray_serve_llm(model_dir),
        "ray-serve-llm-ht": lambda: servers.stock_ray_serve_llm(model_dir, high_throughput=True),
        "modelfleet": lambda: servers.modelfleet(model_dir, work_dir),
        "modelfleet-standard": lambda: servers.modelfleet(model_dir, work_dir, high_throughput=False),
    }
    if not fast:
        del starters["ray-serve-llm-ht"], starters["modelfleet"]
    return starters


def _log(message: str) -> None:
    print(f"[serving {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(
    model_dir: Path,
    work_dir: Path,
    *,
    rounds: int = ROUNDS,
    duration_s: float = CELL_DURATION_S,
    server: str | None = None,
) -> dict[str, Any]:
    """Every system (or only `server`), `rounds` times; a fleet's two endpoints are measured in turn, the
    fleet's first in odd rounds and the prefix first in even ones (the first cells after a start pay for
    what the processes still do then)."""
    cells: list[dict[str, Any]] = []
    startups: list[dict[str, Any]] = []
    starters = _starters(model_dir, work_dir)
    if server is not None:
        starters = {server: starters[server]}
    for round_no in range(1, rounds + 1):
        for start in starters.values():
            with start() as running:
                _log(f"round {round_no}: {running.name} up in {running.startup_s:.1f}s")
                startups.append({"round": round_no, "server": running.name, "startup_s": running.startup_s})
                anchor: str | int = running.extra.get("ray_root") or running.extra["pid"]
                endpoints = running.endpoints if round_no % 2 else running.endpoints[::-1]
                for endpoint in endpoints:
                    for concurrency in CONCURRENCY:
                        snapshot: dict[int, tuple[str, float]] = {}
                        result = asyncio.run(
                            run_cell(
                                endpoint.url,
                                servers.MODEL,
                                concurrency=concurrency,
                                duration_s=duration_s,
                                on_measure=functools.partial(_snapshot, snapshot, anchor),
                            )
                        )
                        summary = {
                            "round": round_no,
                            "system": endpoint.system,
                            **result.summary(),
                            **_cpu_per_request(
                                result, server_cpu_s(snapshot, cpu_seconds(processes(anchor)))
                            ),
                            # Anything else on the box shows here: the cell is then suspect.
                            "loadavg_1m_after": round(os.getloadavg()[0], 2),
                        }
                        cells.append(summary)
                        _log(
                            f"  {endpoint.system:32} c={concurrency:<3} "
                            f"{summary['requests_per_s']:7.2f} req/s ttft p50 {summary['ttft_p50_ms']} ms "
                            f"server CPU {summary['server_cpu_ms_per_request']} ms/req "
                            f"errors {summary['errors']}"
                        )
    table = aggregate(cells)
    return {
        "config": {
            "rounds": rounds,
            "cell_duration_s": duration_s,
            "concurrency": list(CONCURRENCY),
            "prompt": PROMPT,
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
            "engine_args": servers.ENGINE_ARGS,
            "ray_num_cpus": servers.RAY_NUM_CPUS,
        },
        "startups": startups,
        "cells": cells,
        "table": table,
        "ratios": ratios(table),
    }


def _snapshot(into: dict[int, tuple[str, float]], anchor: str | int) -> None:
    into.update(cpu_seconds(processes(anchor)))


def _cpu_per_request(result: CellResult, cpu_s: float) -> dict[str, Any]:
    """The server's CPU time over the measured part of a cell, per request served and per output token:
    the serving overhead as a ratio that does not depend on what else the box is doing (a busy box slows
    requests down, it does not make each cost more CPU)."""
    good = [s for s in result.samples if s.ok]
    tokens = sum(s.output_tokens for s in good)
    return {
        "server_cpu_s": round(cpu_s, 3),
        "server_cpu_ms_per_request": round(1000 * cpu_s / len(good), 3) if good else None,
        "server_cpu_us_per_output_token": round(1e6 * cpu_s / tokens, 1) if tokens else None,
    }


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (system, concurrency): the median over rounds of each metric, errors summed."""
    keys = sorted({(c["system"], c["concurrency"]) for c in cells}, key=lambda k: (_order(k[0]), k[1]))
    rows = []
    for system, concurrency in keys:
        mine = [c for c in cells if c["system"] == system and c["concurrency"] == concurrency]
        row: dict[str, Any] = {"system": system, "concurrency": concurrency, "rounds": len(mine)}
        for metric in (
            "requests_per_s",
            "output_tokens_per_s",
            "ttft_p50_ms",
            "ttft_p99_ms",
            "latency_p50_ms",
            "latency_p99_ms",
            "server_cpu_ms_per_request",
            "server_cpu_us_per_output_token",
        ):
            values = [c[metric] for c in mine if c.get(metric) is not None]
            found = median(values)
            row[metric] = None if found is None else round(found, 2)
        row["requests"] = sum(c["requests"] for c in mine)
        row["errors"] = sum(c["errors"] for c in mine)
        rows.append(row)
    return rows


def _order(system: str) -> int:
    return SYSTEMS.index(system) if system in SYSTEMS else len(SYSTEMS)


def ratios(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ModelFleet over bare vLLM and over stock Ray Serve LLM (both modes), per endpoint and concurrency."""
    by = {(r["system"], r["concurrency"]): r for r in table}
    out = []
    for fleet in FLEETS:
        for concurrency in CONCURRENCY:
            mine = by.get((fleet, concurrency))
            if mine is None:
                continue
            row: dict[str, Any] = {"system": fleet, "concurrency": concurrency}
            for base_name, base_key in BASELINES:
                base = by.get((base_name, concurrency))
                for metric in RATIO_METRICS:
                    if base and base.get(metric) and mine.get(metric) is not None:
                        row[f"{metric}_vs_{base_key}"] = round(mine[metric] / base[metric], 3)
                if base and base["ttft_p50_ms"] is not None and mine["ttft_p50_ms"] is not None:
                    row[f"ttft_p50_overhead_ms_vs_{base_key}"] = round(
                        mine["ttft_p50_ms"] - base["ttft_p50_ms"], 2
                    )
            # The fleet's endpoint against the same fleet's model prefix (issue 14's target: >= 0.95x the
            # throughput at c=32, TTFT p50 within +3 ms at c=1).
            prefix = by.get((fleet.replace("(unified /v1)", f"(prefix /{servers.MODEL}/v1)"), concurrency))
            if "(unified /v1)" in fleet and prefix:
                for metric in ("requests_per_s", "server_cpu_ms_per_request"):
                    if prefix.get(metric) and mine.get(metric) is not None:
                        row[f"{metric}_vs_prefix"] = round(mine[metric] / prefix[metric], 3)
                if prefix["ttft_p50_ms"] is not None and mine["ttft_p50_ms"] is not None:
                    row["ttft_p50_overhead_ms_vs_prefix"] = round(
                        mine["ttft_p50_ms"] - prefix["ttft_p50_ms"], 2
                    )
            out.append(row)
    return out


@contextlib.contextmanager
def only(which: str, model_dir: Path, work_dir: Path) -> Iterator[Any]:
    """One server by name, for profiling sessions by hand."""
    starters = _starters(model_dir, work_dir)
    if which not in starters:
        raise SystemExit(f"{which}: not available here (high-throughput needs scripts/private-net.sh)")
    with starters[which]() as running:
        yield running
