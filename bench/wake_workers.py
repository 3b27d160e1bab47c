"""Part 2b, wake from zero workers: the cost saving and its price, on the test cluster.

The control plane with KubeRay, the operator installed with its chart and the pod runner playing the
kubelet (tests/cluster), as in the end-to-end tests; one fleet whose every model is at `replicas.min: 0` and
whose worker group starts at zero. Per trial: wait until the autoscaler has removed every worker pod (how
long an idle fleet keeps paying for one), then send WAKE_REQUESTS concurrent streaming requests through the
fleet's Service and time each step: request -> worker pod created -> Ray node up (the pod Ready) ->
replica RUNNING (Serve's view) -> first token. Needs the pod network: `make bench-wake` runs it inside
scripts/private-net.sh; elsewhere the part says it was skipped.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stats import median
from modelfleet.localray import wait_for
from tests.cluster.chart import install_operator
from tests.cluster.controlplane import running
from tests.kube.conftest import Kube
from tests.serving.fleetspec import cpu_model
from tests.support.cluster_fleet import API_KEY, Fleet, WakeTimeline, cluster_spec, first_token_s

WAKE_REQUESTS = 4
MODEL = "tiny"
IDLE_TIMEOUT_S = 600
STEPS = ("worker pod created", "Ray node up", "replica RUNNING")


def document(source: Path) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": "wake"},
        "spec": cluster_spec([cpu_model(MODEL, str(source), min_replicas=0)], max_workers=1),
    }


def _burst(fleet: Fleet) -> tuple[list[float], list[str]]:
    client = fleet.client(timeout_s=900)
    ttfts: list[float] = []
    errors: list[str] = []

    def ask() -> None:
        try:
            ttfts.append(first_token_s(client, MODEL))
        except Exception as error:  # every failure is a finding
            errors.append(f"{type(error).__name__}: {error}"[:200])

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(WAKE_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    return sorted(ttfts), errors


def trial(fleet: Fleet) -> dict[str, Any]:
    idle_since = time.monotonic()
    wait_for("every worker pod gone", lambda: not fleet.worker_pods(), timeout_s=IDLE_TIMEOUT_S, every_s=1)
    idle_to_zero = time.monotonic() - idle_since
    with WakeTimeline(fleet, MODEL) as timeline:
        ttfts, errors = _burst(fleet)
    return {
        "wait_for_zero_workers_s": round(idle_to_zero, 1),
        **{
            f"{step.replace(' ', '_')}_s": round(timeline.seen[step], 2)
            for step in STEPS
            if step in timeline.seen
        },
        "first_token_s": round(ttfts[0], 2) if ttfts else None,
        "last_first_token_s": round(ttfts[-1], 2) if ttfts else None,
        "wake_requests": WAKE_REQUESTS,
        "failed": len(errors),
        "errors": errors,
        "messages": timeline.messages,
    }


def run(model_dir: Path, work_dir: Path, *, trials: int) -> dict[str, Any]:
    from tests.cluster.podnet import PodNetworkUnavailable, ensure_routes

    try:
        ensure_routes()
    except PodNetworkUnavailable as error:
        return {"skipped": f"needs the pod network: {error}"}
    rows = []
    with running(work_dir / "control-plane", pods=True) as plane:
        deployment = install_operator(plane.kubeconfig)
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        kube = Kube(plane.kubeconfig, namespace)
        kube.run("create", "namespace", namespace)
        kube.run("create", "secret", "generic", "fleet-keys", f"--from-literal=key={API_KEY}")
        fleet = Fleet(kube, "wake", document(model_dir), deployment)
        fleet.apply()
        fleet.wait_phase("Ready", 900)
        for number in range(1, trials + 1):
            row = {"trial": number, **trial(fleet)}
            rows.append(row)
            print(
                f"[wake-workers] trial {number}: first token {row['first_token_s']}s, failed "
                f"{row['failed']}/{WAKE_REQUESTS}, idle -> 0 workers {row['wait_for_zero_workers_s']}s",
                flush=True,
            )
    return {"config": {"trials": trials, "wake_requests": WAKE_REQUESTS}, "trials": rows, **summary(rows)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        return median([r[key] for r in rows if r.get(key) is not None])

    return {
        "summary": {
            "trials": len(rows),
            "failed_requests": sum(r["failed"] for r in rows),
            "sent_requests": sum(r["wake_requests"] for r in rows),
            **{
                f"{key}_median": med(key)
                for key in (*(f"{s.replace(' ', '_')}_s" for s in STEPS), "first_token_s")
            },
            # The first trial starts from a fleet that never had a worker: only the later ones measure how
            # long an idle worker is kept.
            "idle_to_zero_workers_s_median": median([r["wait_for_zero_workers_s"] for r in rows[1:]]),
        }
    }
