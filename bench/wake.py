"""Part 2, wake from zero: a ModelFleet model at zero replicas, woken by a burst of requests.

Per trial: wait until Serve reports the model's server at 0 replicas, send WAKE_REQUESTS concurrent
streaming requests through the unified endpoint, and watch Serve's replica states on the dashboard
(`/api/serve/applications/`) meanwhile. The wake is split where Serve lets us see it:
autoscaler decision (target replicas 0 -> 1), replica scheduled (a replica appears), engine load
(replica appears -> RUNNING: process start, imports, vLLM engine start), first token after RUNNING.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import servers
from bench.load import chat_body, make_client, stream_chat
from bench.stats import median, ms
from modelfleet.local import network_is_private
from modelfleet.localray import RayHead, wait_for
from serving_app.server import server_deployment_name

TRIALS = 5
WAKE_REQUESTS = 4
DOWNSCALE_DELAY_S = 5
POLL_S = 0.25
SLEEPY = {
    "min": 0,
    "max": 1,
    "targetOngoingRequests": 4,
    "maxOngoingRequests": 32,
    "downscaleDelaySeconds": DOWNSCALE_DELAY_S,
}


@dataclass
class ReplicaWatch:
    """Polls Serve's view of one deployment in a thread; keeps the first time each thing was seen."""

    head: RayHead
    app: str
    deployment: str
    first: dict[str, float] = field(default_factory=dict)
    replica_start_time_s: float | None = None
    replica_ids: list[str] = field(default_factory=list)
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _note(self, what: str, at: float) -> None:
        self.first.setdefault(what, at)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                details = self.head.details()
            except OSError:
                self._stop.wait(POLL_S)
                continue
            at = time.time()
            self.polls += 1
            dep = details["applications"][self.app]["deployments"][self.deployment]
            if int(dep.get("target_num_replicas") or 0) >= 1:
                self._note("target_1", at)
            for replica in dep.get("replicas") or []:
                self._note("replica_seen", at)
                self._note(f"state_{replica['state']}", at)
                if replica.get("replica_id") and replica["replica_id"] not in self.replica_ids:
                    self.replica_ids.append(replica["replica_id"])
                if replica.get("start_time_s") and self.replica_start_time_s is None:
                    self.replica_start_time_s = float(replica["start_time_s"])
            self._stop.wait(POLL_S)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _replicas(head: RayHead, deployment: str) -> tuple[int, int]:
    dep = head.details()["applications"][servers.MODEL]["deployments"][deployment]
    return int(dep.get("target_num_replicas") or 0), len(dep.get("replicas") or [])


async def _burst(url: str, n: int) -> list[Any]:
    body = chat_body(servers.MODEL, max_tokens=8)
    async with make_client(n) as client:
        return list(await asyncio.gather(*(stream_chat(client, url, body) for _ in range(n))))


async def _warm_ttfts(url: str, n: int) -> list[float]:
    body = chat_body(servers.MODEL, max_tokens=8)
    out = []
    async with make_client(1) as client:
        for _ in range(n):
            sample = await stream_chat(client, url, body)
            if sample.ok and sample.ttft_s is not None:
                out.append(sample.ttft_s)
    return out


# Lines the replica logs (to its worker's stderr) on the way up, in order: Serve's constructor starts,
# Ray Serve LLM's "download" tasks on each node (a new Ray worker process), vLLM's engine start.
MILESTONES = {
    "replica_init": "Started initializing replica",
    "node_init_start": "Running tasks to download model files on worker nodes",
    "node_init_end": "Using executor class",
    "engine_started": "Started vLLM engine",
}
LOG_LINE = re.compile(r"^[A-Z]+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ (\S+) .*?-- (.*)$")


def replica_milestones(head: RayHead, replica_id: str) -> dict[str, float]:
    """Wall-clock times of the milestones one replica logged (Ray writes local time)."""
    found: dict[str, float] = {}
    logs = Path(head.root) / "ray" / "session_latest" / "logs"
    for path in [*logs.glob("worker-*.err"), *logs.glob("serve/replica_*.log")]:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = LOG_LINE.match(line)
            if not match or match.group(2) != replica_id:
                continue
            for key, text in MILESTONES.items():
                if match.group(3).startswith(text) and key not in found:
                    found[key] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def _rel(at: float | None, t0: float) -> float | None:
    return None if at is None else round(at - t0, 3)


def trial(head: RayHead, url: str) -> dict[str, Any]:
    deployment = server_deployment_name(servers.MODEL)
    wait_for("the model at zero replicas", lambda: _replicas(head, deployment) == (0, 0), timeout_s=300)
    watch = ReplicaWatch(head, servers.MODEL, deployment)
    watch.start()
    t0 = time.time()
    samples = asyncio.run(_burst(url, WAKE_REQUESTS))
    watch.stop()
    good = [s for s in samples if s.ok]
    ttfts = sorted(s.ttft_s for s in good if s.ttft_s is not None)
    first_token = ttfts[0] if ttfts else None
    seen, running = watch.first.get("replica_seen"), watch.first.get("state_RUNNING")
    warm = asyncio.run(_warm_ttfts(url, 5))
    marks = replica_milestones(head, watch.replica_ids[0]) if watch.replica_ids and head.root else {}
    return {
        "wake_requests": WAKE_REQUESTS,
        "failed": len(samples) - len(good),
        "errors": [s.error for s in samples if not s.ok],
        "first_token_s": None if first_token is None else round(first_token, 3),
        "last_first_token_s": None if not ttfts else round(ttfts[-1], 3),
        "autoscaler_decision_s": _rel(watch.first.get("target_1"), t0),
        "replica_seen_s": _rel(seen, t0),
        "replica_actor_start_s": _rel(watch.replica_start_time_s, t0),
        "running_s": _rel(running, t0),
        "engine_load_s": None if seen is None or running is None else round(running - seen, 3),
        "first_token_after_running_s": (
            None if first_token is None or running is None else round(t0 + first_token - running, 3)
        ),
        **{f"log_{key}_s": _rel(marks.get(key), t0) for key in MILESTONES},
        "replica_id": watch.replica_ids[0] if watch.replica_ids else None,
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "states_seen": sorted(k.removeprefix("state_") for k in watch.first if k.startswith("state_")),
        "poll_interval_s": POLL_S,
        "polls": watch.polls,
        "warm_ttft_ms": [ms(t) for t in warm],
    }


def _log(message: str) -> None:
    print(f"[wake {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(model_dir: Path, work_dir: Path, *, trials: int = TRIALS) -> dict[str, Any]:
    rows = []
    # As the fleet ships (highThroughput on) where that is safe to run; the standard path elsewhere.
    fast = network_is_private()
    with servers.modelfleet(
        model_dir, work_dir, name="wake", replicas=SLEEPY, high_throughput=fast
    ) as running:
        head: RayHead = running.extra["fleet"].head
        url = running.endpoints[0].url  # the unified endpoint: the router never sleeps
        for number in range(1, trials + 1):
            row = {"trial": number, **trial(head, url)}
            rows.append(row)
            _log(
                f"trial {number}: first token {row['first_token_s']}s, engine load {row['engine_load_s']}s, "
                f"failed {row['failed']}/{WAKE_REQUESTS}"
            )
    return {
        "config": {"trials": trials, "replicas": SLEEPY, "endpoint": "/v1"},
        "trials": rows,
        **summary(rows),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        found = median([r[key] for r in rows if r[key] is not None])
        return None if found is None else round(found, 3)

    warm = [t for r in rows for t in r["warm_ttft_ms"] if t is not None]
    overheads = [
        r["first_token_s"] - r["engine_load_s"]
        for r in rows
        if r["first_token_s"] is not None and r["engine_load_s"] is not None
    ]
    return {
        "summary": {
            "trials": len(rows),
            "failed_requests": sum(r["failed"] for r in rows),
            "sent_requests": sum(r["wake_requests"] for r in rows),
            "first_token_s_median": med("first_token_s"),
            "first_token_s_max": max((r["first_token_s"] for r in rows if r["first_token_s"]), default=None),
            "autoscaler_decision_s_median": med("autoscaler_decision_s"),
            "replica_seen_s_median": med("replica_seen_s"),
            "engine_load_s_median": med("engine_load_s"),
            "first_token_after_running_s_median": med("first_token_after_running_s"),
            "wake_minus_engine_load_s_median": None if not overheads else round(median(overheads) or 0, 3),
            "wake_minus_engine_load_s_max": None if not overheads else round(max(overheads), 3),
            "warm_ttft_ms_median": median(warm),
        }
    }
