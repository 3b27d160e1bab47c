"""The CPU time of a server's processes: what `bench serving` charges to each request, and `bench profile`
splits by process role.

A server is its process tree (bare vLLM: the API server and its engine core) or every process of its Ray head
(GCS, raylet, dashboard, Serve's controller and proxies or HAProxy, every replica and its engine). The client
(the benchmark's own process) is never counted.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any


def role(cmdline: str, name: str) -> str:
    """A short, stable name for a process of the serving stack."""
    # A replica's title is `ray::SERVE_REPLICA::app#deployment#id` while idle and
    # `ray::ServeReplica:app:deployment.method` while it runs a call.
    match = re.search(r"ray::SERVE_REPLICA::[^#]+#([^#]+)#", cmdline) or re.search(
        r"ray::ServeReplica:[^:]+:([^.\s]+)", cmdline
    )
    if match:
        return f"replica {match.group(1)}"
    for pattern, role in (
        (r"ray::ProxyActor", "Serve proxy"),
        (r"ray::ServeController", "Serve controller"),
        (r"VLLM::EngineCore|EngineCore", "vLLM engine core"),
        (r"VLLM::Worker", "vLLM worker"),
        (r"vllm.entrypoints.openai.api_server", "vLLM API server"),
        (r"haproxy", "HAProxy"),
        (r"gcs_server", "Ray GCS"),
        (r"raylet", "raylet"),
        (r"dashboard", "Ray dashboard"),
    ):
        if re.search(pattern, cmdline) or re.search(pattern, name):
            return role
    return name or cmdline[:40]


def processes(anchor: str | int) -> list[Any]:
    """Processes of one server: those whose command line names `anchor` (a Ray temp root) or the
    tree under pid `anchor`, with their descendants."""
    import psutil

    found: dict[int, Any] = {}
    if isinstance(anchor, int):
        roots = [psutil.Process(anchor)]
    else:
        roots = [p for p in psutil.process_iter(["cmdline"]) if anchor in " ".join(p.info["cmdline"] or [])]
    for proc in roots:
        found[proc.pid] = proc
        with contextlib.suppress(psutil.Error):
            found.update({c.pid: c for c in proc.children(recursive=True)})
    return list(found.values())


def cpu_seconds(procs: list[Any]) -> dict[int, tuple[str, float]]:
    import psutil

    out = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            cmdline = " ".join(proc.cmdline())
            out[proc.pid] = (role(cmdline, proc.name()), times.user + times.system)
    return out


def server_cpu_s(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> float:
    """CPU seconds the server used between two `cpu_seconds` snapshots: every process's growth, and the
    whole time of processes that started in between (a replica or an engine started under load)."""
    return sum(cpu - before[pid][1] if pid in before else cpu for pid, (_, cpu) in after.items())
