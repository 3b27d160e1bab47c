"""The three ways to serve the tiny model, each started and stopped whole, one at a time.

- bare vLLM: `python -m vllm.entrypoints.openai.api_server` as a child process;
- stock Ray Serve LLM: `ray.serve.llm:build_openai_app` deployed on its own private Ray head;
- ModelFleet: a fleet file through `modelfleet up`'s code (`modelfleet.local.up`).

All bind 127.0.0.1 only; processes are ended by pid (Ray heads through `localray.stop_head`).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelfleet import local
from modelfleet.localray import RAY_ENV, RayHead, free_port, http_ok, start_head, stop_head, wait_for
from modelfleet.render.cluster import HIGH_THROUGHPUT_ENV

MODEL = "tiny"
ENGINE_ARGS: dict[str, Any] = {
    "enforce_eager": True,
    "max_model_len": 256,
    "kv_cache_memory_bytes": 268435456,
}
# Logical CPUs of the private Ray heads: room for the engine bundle plus the zero-CPU ingresses.
RAY_NUM_CPUS = 4
START_TIMEOUT_S = 600


@dataclass
class Endpoint:
    """One URL under test: what serves it and the chat completions URL."""

    system: str
    path: str
    url: str


@dataclass
class Running:
    """A started server: its endpoints and how long it took to come up."""

    name: str
    endpoints: list[Endpoint]
    startup_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _end_process_tree(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """End a child we started and every descendant of it, by pid."""
    import psutil

    try:
        parent = psutil.Process(process.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)


@contextlib.contextmanager
def bare_vllm(model_dir: Path, log_dir: Path) -> Iterator[Running]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        str(ENGINE_ARGS["max_model_len"]),
        "--kv-cache-memory-bytes",
        str(ENGINE_ARGS["kv_cache_memory_bytes"]),
        "--uvicorn-log-level",
        "warning",
    ]
    cache = Path(tempfile.mkdtemp(prefix="mf-bench-vllm-", dir="/tmp"))
    env = {**os.environ, **RAY_ENV, "VLLM_CACHE_ROOT": str(cache), "TMPDIR": str(cache)}
    started = time.monotonic()
    with (log_dir / "bare-vllm.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"bare vLLM exited with {process.returncode}; see {log_dir}/bare-vllm.log")
            return http_ok(f"http://127.0.0.1:{port}/health")

        wait_for("bare vLLM /health", healthy, timeout_s=START_TIMEOUT_S)
        base = f"http://127.0.0.1:{port}"
        endpoint = Endpoint("bare vLLM", "/v1", f"{base}/v1/chat/completions")
        yield Running("bare-vllm", [endpoint], time.monotonic() - started, {"pid": process.pid})
    finally:
        _end_process_tree(process)
        shutil.rmtree(cache, ignore_errors=True)


def stock_serve_config(model_dir: Path, serve_port: int) -> dict[str, Any]:
    """Ray Serve LLM as its docs deploy it: `build_openai_app` with one LLMConfig, defaults elsewhere."""
    llm_config = {
        "model_loading_config": {"model_id": MODEL, "model_source": str(model_dir)},
        "engine_kwargs": ENGINE_ARGS,
        "accelerator_config": {"kind": "cpu"},
        "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
    }
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": serve_port},
        "applications": [
            {
                "name": "llm",
                "route_prefix": "/",
                "import_path": "ray.serve.llm:build_openai_app",
                "args": {"llm_configs": [llm_config]},
            }
        ],
    }


def _require_private_network() -> None:
    if not local.network_is_private():
        raise RuntimeError(
            "high-throughput mode opens ports on all interfaces: run the benchmark in a private network "
            "namespace (`make bench` does, through scripts/private-net.sh)"
        )


@contextlib.contextmanager
def stock_ray_serve_llm(model_dir: Path, *, high_throughput: bool = False) -> Iterator[Running]:
    """`build_openai_app` as documented; `high_throughput` adds Ray's own fast-mode environment (the same
    variables a ModelFleet's highThroughput sets), in which Ray serves the LLMServer as the ingress."""
    if high_throughput:
        _require_private_network()
    started = time.monotonic()
    extra_env = HIGH_THROUGHPUT_ENV if high_throughput else None
    head = start_head(num_cpus=RAY_NUM_CPUS, serve_port=free_port(), extra_env=extra_env)
    try:
        head.deploy(stock_serve_config(model_dir, head.serve_port))

        def app_running() -> bool:
            app = head.details().get("applications", {}).get("llm") or {}
            if app.get("status") == "DEPLOY_FAILED":
                raise RuntimeError(f"stock Ray Serve LLM failed: {app.get('message', '')[-1500:]}")
            return bool(app.get("status") == "RUNNING")

        wait_for("stock Ray Serve LLM", app_running, timeout_s=START_TIMEOUT_S, every_s=1)
        label = "stock Ray Serve LLM" + (" (high-throughput)" if high_throughput else "")
        endpoint = Endpoint(label, "/v1", f"{head.serve_url}/v1/chat/completions")
        name = "ray-serve-llm" + ("-ht" if high_throughput else "")
        yield Running(name, [endpoint], time.monotonic() - started, {"ray_root": head.root})
    finally:
        stop_head(head)


def fleet_document(
    model_dir: Path,
    name: str,
    replicas: dict[str, Any],
    *,
    high_throughput: bool = True,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The bench's one-model fleet; `model` overrides fields of the model (bench/prefix.py: routing)."""
    return {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": name},
        "spec": {
            "models": [
                {
                    "name": MODEL,
                    "source": str(model_dir),
                    "accelerator": "cpu",
                    "cpus": 1,
                    "replicas": replicas,
                    "engineArgs": ENGINE_ARGS,
                }
                | (model or {})
            ],
            "highThroughput": high_throughput,
        },
    }


ALWAYS_ON = {"min": 1, "max": 1, "targetOngoingRequests": 32, "maxOngoingRequests": 64}


@contextlib.contextmanager
def modelfleet(
    model_dir: Path,
    work_dir: Path,
    *,
    name: str = "bench",
    replicas: dict[str, Any] | None = None,
    high_throughput: bool = True,
    model: dict[str, Any] | None = None,
) -> Iterator[Running]:
    """A fleet through `modelfleet up`'s code, its state in `work_dir` (not the user's .modelfleet/)."""
    if high_throughput:
        _require_private_network()
    path = work_dir / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            fleet_document(
                model_dir, name, replicas or ALWAYS_ON, high_throughput=high_throughput, model=model
            )
        ),
        encoding="utf-8",
    )
    previous, local.STATE_DIR = local.STATE_DIR, work_dir / "state"
    progress = io.StringIO()
    started = time.monotonic()
    try:
        fleet = local.up(
            str(path),
            address=None,
            cpu=True,
            serve_port=free_port(),
            num_cpus=RAY_NUM_CPUS,
            timeout_s=START_TIMEOUT_S,
            out=progress,
        )
    except BaseException:
        for state in local.STATE_DIR.glob("*.json"):
            stop_head(RayHead.load(state))
            state.unlink()
        local.STATE_DIR = previous
        raise
    try:
        base = fleet.head.serve_url
        label = "ModelFleet" if high_throughput else "ModelFleet (highThroughput off)"
        endpoints = [
            Endpoint(f"{label} (unified /v1)", "/v1", f"{base}/v1/chat/completions"),
            Endpoint(f"{label} (prefix /{MODEL}/v1)", f"/{MODEL}/v1", f"{base}/{MODEL}/v1/chat/completions"),
        ]
        yield Running(
            "modelfleet" + ("" if high_throughput else "-standard"),
            endpoints,
            time.monotonic() - started,
            {"ray_root": fleet.head.root, "dashboard": fleet.head.dashboard_url, "fleet": fleet},
        )
    finally:
        local.down(fleet.name, out=progress)
        local.STATE_DIR = previous
