"""What the operator reads from a fleet's Ray cluster besides KubeRay's status: Serve's own view of its
applications (`GET /api/serve/applications/` on the dashboard), which knows replicas.

KubeRay reports an application RUNNING and its deployments HEALTHY whether a model has one replica or has
scaled to zero, so without this `ScaledToZero` and `status.models[].replicas` could not be told. The
dashboard is reached like KubeRay reaches it: through the RayService's head Service
(`<rayservice>-head-svc.<namespace>.svc.<cluster domain>:8265`, which KubeRay points at the serving
cluster). An answer that does not come in time is no answer: status then rests on KubeRay's alone, and
the fleet is not asked again for a while, so an unreachable dashboard never slows reconciles down.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from modelfleet_contract.wire import DASHBOARD_PORT

log = logging.getLogger(__name__)
TIMEOUT_S = 3.0
# After a failed read, how long a fleet goes without asking again.
BACKOFF_S = 30.0

Fetch = Callable[[str, str], "dict[str, Any] | None"]


def dashboard_url(namespace: str, rayservice: str, cluster_domain: str | None = None) -> str:
    domain = cluster_domain or os.environ.get("CLUSTER_DOMAIN") or "cluster.local"
    return f"http://{rayservice}-head-svc.{namespace}.svc.{domain}:{DASHBOARD_PORT}"


class ServeDetails:
    """Reads Serve's application details per RayService, with a per-fleet backoff after failures."""

    def __init__(self, *, timeout_s: float = TIMEOUT_S, backoff_s: float = BACKOFF_S) -> None:
        self.timeout_s, self.backoff_s = timeout_s, backoff_s
        self._failed_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str, rayservice: str) -> dict[str, Any] | None:
        key = (namespace, rayservice)
        with self._lock:
            failed = self._failed_at.get(key)
        if failed is not None and time.monotonic() - failed < self.backoff_s:
            return None
        url = f"{dashboard_url(namespace, rayservice)}/api/serve/applications/"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body: dict[str, Any] = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            with self._lock:
                first = key not in self._failed_at
                self._failed_at[key] = time.monotonic()
            if first:  # say it once per outage, not on every poll
                log.warning("Serve details of %s/%s unavailable (%s): status from KubeRay only", *key, error)
            return None
        with self._lock:
            if self._failed_at.pop(key, None) is not None:
                log.info("Serve details of %s/%s readable again", *key)
        return body if isinstance(body.get("applications"), dict) else None


def serving_cluster(rayservice: dict[str, Any] | None) -> bool:
    """KubeRay reports a cluster that serves (active), so its dashboard is worth asking."""
    status = (rayservice or {}).get("status") or {}
    return bool((status.get("activeServiceStatus") or {}).get("rayClusterName"))


def serving_cluster_name(rayservice: dict[str, Any] | None) -> str:
    """The Ray cluster whose workers the fleet reports: the active one, or before any is, the one being
    built ("" when KubeRay has named none)."""
    status = (rayservice or {}).get("status") or {}
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        name = (status.get(key) or {}).get("rayClusterName")
        if name:
            return str(name)
    return ""
