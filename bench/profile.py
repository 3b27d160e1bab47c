"""Where the CPU goes: per-process CPU time per request under load, and py-spy stacks.

`python -m bench profile bare-vllm|ray-serve-llm|modelfleet` starts one server, loads it at one
concurrency, and charges the CPU seconds each process used to the requests served (ms of CPU per
request, per process role: proxy, ingress, model server, engine core, ...). With `--py-spy`, it also
records collapsed stacks of the busiest processes (py-spy must be installed: `pip install py-spy`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import servers
from bench.cpu import cpu_seconds, processes, role
from bench.load import run_cell
from bench.serving import only

PY_SPY_RATE = 100


def _py_spy(pids: list[int], seconds: float, out_dir: Path) -> list[subprocess.Popen[bytes]]:
    binary = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
    return [
        subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(PY_SPY_RATE),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out_dir / f"pyspy-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def top_frames(path: Path, n: int = 15) -> list[tuple[str, float]]:
    """Self-time share of the leaf frames in a py-spy raw (collapsed) file."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        counts[leaf] += int(count)
        total += int(count)
    return [(frame, round(100 * c / total, 1)) for frame, c in counts.most_common(n)] if total else []


# Frames of the code our middlewares wrap or call into on every request (the app, the ASGI server): time
# spent in them under our frames is theirs, not ours.
WRAPPED = ("vllm/", "fastapi/", "starlette/", "uvicorn/", "ray/llm/", "ray/serve/")


def own_share(path: Path, package: str = "serving_app/") -> float:
    """Share (%) of a py-spy raw file's samples spent in `package`'s own code: a serving_app frame on the
    stack with no frame of the code it wraps (WRAPPED) after the last one (a middleware awaiting vLLM's
    handler is not ours; its JSON parsing, key check or metric recording is)."""
    hit = total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = stack.split(";")
        ours = [i for i, frame in enumerate(frames) if package in frame]
        if ours and not any(w in frame for frame in frames[ours[-1] + 1 :] for w in WRAPPED):
            hit += int(count)
    return round(100 * hit / total, 1) if total else 0.0


def run(
    which: str, model_dir: Path, work_dir: Path, *, concurrency: int, duration_s: float, py_spy: bool
) -> dict[str, Any]:
    with only(which, model_dir, work_dir) as running:
        anchor: str | int = running.extra.get("ray_root") or running.extra["pid"]
        report: dict[str, Any] = {"server": which, "concurrency": concurrency, "endpoints": {}}
        for endpoint in running.endpoints:
            asyncio.run(run_cell(endpoint.url, servers.MODEL, concurrency=concurrency, duration_s=2))
            procs = processes(anchor)
            before = cpu_seconds(procs)
            spies = (
                _py_spy(
                    [p.pid for p in procs if role(" ".join(p.cmdline()), p.name()) in _HOT],
                    duration_s,
                    work_dir,
                )
                if py_spy
                else []
            )
            started = time.monotonic()
            result = asyncio.run(
                run_cell(endpoint.url, servers.MODEL, concurrency=concurrency, duration_s=duration_s)
            )
            wall = time.monotonic() - started
            after = cpu_seconds(procs)
            for spy in spies:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(timeout=60)
            served = max(1, len([s for s in result.samples if s.ok]))
            tokens = max(1, sum(s.output_tokens for s in result.samples if s.ok))
            per_role: dict[str, float] = collections.defaultdict(float)
            for pid, (what, cpu) in after.items():
                if pid in before:
                    per_role[what] += cpu - before[pid][1]
            report["endpoints"][endpoint.system] = {
                **result.summary(),
                "wall_s": round(wall, 2),
                "cpu_ms_per_request": {
                    r: round(1000 * c / served, 2)
                    for r, c in sorted(per_role.items(), key=lambda x: -x[1])
                    if c > 0.05
                },
                "cpu_us_per_output_token": {
                    r: round(1e6 * c / tokens, 1)
                    for r, c in sorted(per_role.items(), key=lambda x: -x[1])
                    if c > 0.05
                },
                "py_spy_top": {
                    f"{after.get(int(p.stem.split('-')[1]), ('?', 0))[0]} ({p.stem})": top_frames(p)
                    for p in sorted(work_dir.glob("pyspy-*.txt"))
                },
                # ModelFleet's own code (serving_app/) in each process: what is ours to remove.
                "py_spy_serving_app_percent": {
                    f"{after.get(int(p.stem.split('-')[1]), ('?', 0))[0]} ({p.stem})": own_share(p)
                    for p in sorted(work_dir.glob("pyspy-*.txt"))
                },
            }
            for path in work_dir.glob("pyspy-*.txt"):
                path.rename(work_dir / f"done-{endpoint.path.strip('/').replace('/', '_')}-{path.name}")
        return report


_HOT = {"Serve proxy", "vLLM API server", "vLLM engine core", "vLLM worker"} | {
    f"replica {d}"
    for d in (
        "LLMServer:tiny",
        "ModelIngress",
        "FleetRouter",
        "OpenAiIngress",
        "LLMServer:llm",
        "LLMRouter",  # high-throughput mode: HAProxy asks it for each request's replica
    )
}
