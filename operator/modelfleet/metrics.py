"""Prometheus metrics of the operator: reconciles, their durations, fleets by phase."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("modelfleet_reconciles_total", "Reconciles by result", ["result"])
DURATION = Histogram(
    "modelfleet_reconcile_duration_seconds",
    "Time to reconcile one fleet",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FLEETS = Gauge("modelfleet_fleets", "Fleets by phase", ["phase"])
PHASES = ("Pending", "Deploying", "Ready", "Degraded", "Failed", "Invalid", "Upgrading")

_lock = threading.Lock()
_phase_of: dict[str, str] = {}


def serve(port: int) -> None:
    """Expose /metrics on all interfaces of the pod (the metrics Service scrapes it)."""
    start_http_server(port)


def observe_reconcile(result: str, seconds: float) -> None:
    RECONCILES.labels(result=result).inc()
    DURATION.observe(seconds)


def set_phase(fleet: str, phase: str) -> None:
    with _lock:
        _phase_of[fleet] = phase
        _publish()


def forget(fleet: str) -> None:
    with _lock:
        _phase_of.pop(fleet, None)
        _publish()


def tracked() -> int:
    with _lock:
        return len(_phase_of)


def _publish() -> None:
    for phase in PHASES:
        FLEETS.labels(phase=phase).set(sum(1 for p in _phase_of.values() if p == phase))
