"""Markdown tables from the result files, for docs/benchmarks.md (`python -m bench tables`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import results
from bench.results import RESULTS_DIR


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def serving(body: dict[str, Any]) -> str:
    table = _table(
        [
            "system",
            "conc.",
            "req/s",
            "out tok/s",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "lat. p50 ms",
            "lat. p99 ms",
            "server CPU ms/req",
            "server CPU µs/token",
            "requests",
            "errors",
        ],
        [
            [
                r["system"],
                r["concurrency"],
                r["requests_per_s"],
                r["output_tokens_per_s"],
                r["ttft_p50_ms"],
                r["ttft_p99_ms"],
                r["latency_p50_ms"],
                r["latency_p99_ms"],
                r.get("server_cpu_ms_per_request"),
                r.get("server_cpu_us_per_output_token"),
                r["requests"],
                r["errors"],
            ]
            for r in body["table"]
        ],
    )
    ratios = _table(
        [
            "ModelFleet endpoint",
            "conc.",
            "throughput / bare",
            "throughput / Ray Serve LLM",
            "throughput / Ray Serve LLM high-thr.",
            "TTFT p50 - bare (ms)",
            "TTFT p50 - Ray Serve LLM (ms)",
            "TTFT p50 - Ray Serve LLM high-thr. (ms)",
            "server CPU per request / bare",
            "server CPU per request / Ray Serve LLM high-thr.",
        ],
        [
            [
                r["system"],
                r["concurrency"],
                r.get("output_tokens_per_s_vs_bare"),
                r.get("output_tokens_per_s_vs_ray_serve_llm"),
                r.get("output_tokens_per_s_vs_ray_serve_llm_ht"),
                r.get("ttft_p50_overhead_ms_vs_bare"),
                r.get("ttft_p50_overhead_ms_vs_ray_serve_llm"),
                r.get("ttft_p50_overhead_ms_vs_ray_serve_llm_ht"),
                r.get("server_cpu_ms_per_request_vs_bare"),
                r.get("server_cpu_ms_per_request_vs_ray_serve_llm_ht"),
            ]
            for r in body["ratios"]
        ],
    )
    unified = _table(
        [
            "fleet's endpoint",
            "conc.",
            "req/s / the prefix's",
            "TTFT p50 - the prefix's (ms)",
            "server CPU per request / the prefix's",
        ],
        [
            [
                r["system"],
                r["concurrency"],
                r.get("requests_per_s_vs_prefix"),
                r.get("ttft_p50_overhead_ms_vs_prefix"),
                r.get("server_cpu_ms_per_request_vs_prefix"),
            ]
            for r in body["ratios"]
            if "requests_per_s_vs_prefix" in r
        ],
    )
    startups = _table(
        ["round", "server", "startup s"],
        [[s["round"], s["server"], round(s["startup_s"], 1)] for s in body["startups"]],
    )
    return f"{table}\n\n{ratios}\n\n{unified}\n\n{startups}"


def wake(body: dict[str, Any]) -> str:
    rows = [
        [
            r["trial"],
            r["first_token_s"],
            r["last_first_token_s"],
            r["autoscaler_decision_s"],
            r["replica_seen_s"],
            r["engine_load_s"],
            r["first_token_after_running_s"],
            f"{r['failed']}/{r['wake_requests']}",
        ]
        for r in body["trials"]
    ]
    trials = _table(
        [
            "trial",
            "first token s",
            "4th first token s",
            "target 0->1 at s",
            "replica seen at s",
            "engine load s",
            "RUNNING -> first token s",
            "failed",
        ],
        rows,
    )
    s = body["summary"]
    summary = _table(["metric", "value"], [[k, v] for k, v in s.items()])
    return f"{trials}\n\n{summary}"


def _operator_rows(body: dict[str, Any]) -> list[tuple[str, Any]]:
    w, f, o = body["with_operator"], body["floor"], body["with_operator"]["operator"]
    return [
        ("fleets created (sequential client)", f"{w['fleets']} in {w['create_s']} s"),
        ("create call p50 / p99 ms", f"{w['create_calls']['p50_ms']} / {w['create_calls']['p99_ms']}"),
        (
            "reconcile latency p50 / p99 ms",
            f"{w['reconcile_latency']['p50_ms']} / {w['reconcile_latency']['p99_ms']}",
        ),
        ("reconcile throughput (fleets/s)", w["reconcile_throughput_per_s"]),
        ("operator idle again (every fleet's status written) after s", w.get("settled_s")),
        (
            f"status propagation, paced ({body['config']['pace_s']} s apart) p50 / p99 ms",
            f"{w['status_propagation_paced']['p50_ms']} / {w['status_propagation_paced']['p99_ms']}",
        ),
        (
            "status propagation, burst p50 / p99 ms",
            f"{w['status_propagation_burst']['p50_ms']} / {w['status_propagation_burst']['p99_ms']}",
        ),
        ("status burst throughput (fleets/s)", w["status_burst_throughput_per_s"]),
        (
            "operator RSS idle / after creates / peak MB",
            f"{o['rss_idle_mb']} / {o['rss_after_create_mb']} / {o['rss_peak_mb']}",
        ),
        (
            "operator CPU s: startup / creates / status",
            f"{o['cpu_s_startup']} / {o['cpu_s_create_phase']} / {o['cpu_s_status_phase']}",
        ),
        (
            "operator CPU ms per fleet created / per status change",
            f"{o['cpu_ms_per_fleet_create']} / {o['cpu_ms_per_status_change']}",
        ),
        ("API server CPU s over the same span (wall s)", f"{w['apiserver_cpu_s']} ({w['wall_s']})"),
        ("floor: RayServices created directly (per s)", f["create_throughput_per_s"]),
        ("floor: create call p50 / p99 ms", f"{f['create_call_p50_ms']} / {f['create_call_p99_ms']}"),
        ("floor: status patches directly (per s)", f["status_patch_throughput_per_s"]),
        (
            "floor: status patch call p50 / p99 ms",
            f"{f['status_patch_call_p50_ms']} / {f['status_patch_call_p99_ms']}",
        ),
    ]


def operator(body: dict[str, Any], emulator: dict[str, Any] | None = None) -> str:
    """The operator at scale; beside it the run against the retired API server emulator, when kept."""
    rows = _operator_rows(body)
    if emulator is None:
        return _table(["metric", "value"], [list(row) for row in rows])
    before = dict(_operator_rows(emulator))
    server = body["config"].get("server", "real control plane")
    return _table(
        ["metric", server, "emulator (kmock, retired)"],
        [[name, value, before.get(name)] for name, value in rows],
    )


def prefix(body: dict[str, Any]) -> str:
    """Prefix-aware vs power-of-two routing on the same shared-prefix load."""
    rows = [
        [
            r["routing"],
            r["endpoint"],
            r["requests_per_s"],
            r["ttft_p50_ms"],
            r["ttft_p99_ms"],
            r["prefix_cache_hit_rate"],
            r["errors"],
        ]
        for r in body["rows"]
    ]
    return _table(
        ["routing", "endpoint", "req/s", "TTFT p50 ms", "TTFT p99 ms", "prefix-cache hit rate", "errors"],
        rows,
    )


def wake_workers(body: dict[str, Any]) -> str:
    if "skipped" in body:
        return f"skipped: {body['skipped']}"
    steps = (
        "worker_pod_created_s",
        "Ray_node_up_s",
        "replica_RUNNING_s",
        "first_token_s",
        "last_first_token_s",
    )
    rows = [
        [
            r["trial"],
            r["wait_for_zero_workers_s"],
            *(r.get(s) for s in steps),
            f"{r['failed']}/{r['wake_requests']}",
        ]
        for r in body["trials"]
    ]
    return _table(
        [
            "trial",
            "idle -> 0 workers s",
            "worker pod created s",
            "Ray node up s",
            "replica RUNNING s",
            "first token s",
            "4th first token s",
            "failed",
        ],
        rows,
    )


def render_all(results_dir: Path = RESULTS_DIR) -> str:
    parts = []
    renders = (("serving", serving), ("wake", wake), ("wake-workers", wake_workers), ("prefix", prefix))
    for part, render in renders:
        if (results_dir / f"{part}.json").exists():
            parts.append(f"## {part}\n\n{render(results.read(part, results_dir))}\n")
    if (results_dir / "operator.json").exists():
        emulator = (
            results.read("operator-emulator", results_dir)
            if (results_dir / "operator-emulator.json").exists()
            else None
        )
        parts.append(f"## operator\n\n{operator(results.read('operator', results_dir), emulator)}\n")
    return "\n".join(parts)
