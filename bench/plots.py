"""PNG plots from the result files (matplotlib, headless), written beside the JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import results
from bench.results import RESULTS_DIR


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def serving(body: dict[str, Any], out: Path) -> list[Path]:
    plt = _pyplot()
    table = body["table"]
    systems = list(dict.fromkeys(r["system"] for r in table))
    paths = []
    for metric, label, name in (
        ("output_tokens_per_s", "output tokens/s (median of rounds)", "serving-throughput.png"),
        ("ttft_p50_ms", "TTFT p50 (ms)", "serving-ttft.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4))
        for system in systems:
            rows = [r for r in table if r["system"] == system]
            ax.plot([r["concurrency"] for r in rows], [r[metric] for r in rows], marker="o", label=system)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def wake(body: dict[str, Any], out: Path) -> list[Path]:
    plt = _pyplot()
    rows = body["trials"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, row in enumerate(rows):
        seen = row["replica_seen_s"] or 0.0
        load = row["engine_load_s"] or 0.0
        tail = max((row["first_token_s"] or 0.0) - seen - load, 0.0)
        ax.barh(i, seen, color="#bbbbbb", label="to replica scheduled" if i == 0 else None)
        ax.barh(i, load, left=seen, color="#4477aa", label="engine load" if i == 0 else None)
        ax.barh(i, tail, left=seen + load, color="#ee6677", label="to first token" if i == 0 else None)
    ax.set_yticks(range(len(rows)), labels=[f"trial {r['trial']}" for r in rows])
    ax.set_xlabel("seconds from request")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / "wake.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def operator(body: dict[str, Any], out: Path) -> list[Path]:
    plt = _pyplot()
    samples = body["with_operator"]["operator"]["rss_samples_mb"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s[0] for s in samples], [s[1] for s in samples])
    ax.axhline(200, color="#ee6677", linestyle="--", label="goal 200 MB")
    ax.set_xlabel("seconds since operator start")
    ax.set_ylabel("operator RSS (MB)")
    ax.set_title(f"{body['config']['fleets']} fleets created, then their status patched")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "operator-rss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_all(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Every plot whose result file exists."""
    paths: list[Path] = []
    for part, draw in (("serving", serving), ("wake", wake), ("operator", operator)):
        if (results_dir / f"{part}.json").exists():
            paths += draw(results.read(part, results_dir), results_dir)
    return paths
