"""What the operator reads from a fleet's Ray cluster besides KubeRay's status: Serve's own view of its
applications (`GET /api/serve/applications/` on the dashboard), which knows replicas.

KubeRay reports an application RUNNING and its deployments HEALTHY whether a model has one replica or has
scaled to zero, so without this `ScaledToZero` and `status.models[].replicas` could not be told. The
dashboard is reached like KubeRay reaches it: through the RayService's head Service
(`<rayservice>-head-svc.<namespace>.svc.<cluster domain>:8265`, which KubeRay points at the serving
cluster). An answer that does not come in time is no answer: status then rests on KubeRay's alone, and
the fleet is not asked again for a while, so an unreachable dashboard never slows reconciles down.

The dashboard runs in the fleet's pods, on an image the fleet chooses: its answer is read under an overall
deadline (not only a per-read timeout, which a reply trickling a byte at a time would never trip) and a
size cap, and one that is not Serve's shape is no answer either, never an exception in a reconcile.
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
from typing import Any, cast

from modelfleet_contract.wire import DASHBOARD_PORT

log = logging.getLogger(__name__)
TIMEOUT_S = 3.0
# The largest answer read: Serve's details of a fleet of hundreds of models and replicas are a few MB.
MAX_BYTES = 32 << 20
_CHUNK = 1 << 16
# After a failed read, how long a fleet goes without asking again.
BACKOFF_S = 30.0

Fetch = Callable[[str, str], "dict[str, Any] | None"]


def dashboard_url(namespace: str, rayservice: str, cluster_domain: str | None = None) -> str:
    domain = cluster_domain or os.environ.get("CLUSTER_DOMAIN") or "cluster.local"
    return f"http://{rayservice}-head-svc.{namespace}.svc.{domain}:{DASHBOARD_PORT}"


class ServeDetails:
    """Reads Serve's application details per RayService, with a per-fleet backoff after failures."""

    def __init__(
        self,
        *,
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        max_bytes: int = MAX_BYTES,
        url: Callable[[str, str], str] | None = None,
    ) -> None:
        """`url(namespace, rayservice)` is the dashboard's base URL (default: the head Service's)."""
        self.timeout_s, self.backoff_s, self.max_bytes = timeout_s, backoff_s, max_bytes
        self.url = url or dashboard_url
        self._failed_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str, rayservice: str) -> dict[str, Any] | None:
        key = (namespace, rayservice)
        with self._lock:
            failed = self._failed_at.get(key)
        if failed is not None and time.monotonic() - failed < self.backoff_s:
            return None
        url = f"{self.url(namespace, rayservice)}/api/serve/applications/"
        try:
            body = json.loads(read_bounded(url, timeout_s=self.timeout_s, max_bytes=self.max_bytes))
            if not well_formed(body):
                raise ValueError("not Serve's application details (applications -> deployments -> replicas)")
        except (urllib.error.URLError, OSError, ValueError, RecursionError) as error:
            with self._lock:
                first = key not in self._failed_at
                self._failed_at[key] = time.monotonic()
            if first:  # say it once per outage, not on every poll
                log.warning("Serve details of %s/%s unavailable (%s): status from KubeRay only", *key, error)
            return None
        with self._lock:
            if self._failed_at.pop(key, None) is not None:
                log.info("Serve details of %s/%s readable again", *key)
        return cast(dict[str, Any], body)


def read_bounded(url: str, *, timeout_s: float, max_bytes: int) -> bytes:
    """The body at `url`, complete within about `timeout_s` (the deadline is checked between reads, each of
    which waits at most the time left) and at most `max_bytes` long; TimeoutError or ValueError otherwise."""
    deadline = time.monotonic() + timeout_s
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ValueError(f"an answer of {declared} bytes, above the {max_bytes} read")
        sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete answer within {timeout_s:g} s")
            if sock is not None:
                sock.settimeout(left)
            chunk = response.read1(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise ValueError(f"an answer above the {max_bytes} bytes read")
            chunks.append(chunk)


def well_formed(body: Any) -> bool:
    """Serve's details as status reads them: applications (objects) -> deployments (objects) -> replicas
    (a list of objects)."""
    apps = body.get("applications") if isinstance(body, dict) else None
    if not isinstance(apps, dict) or not all(isinstance(app, dict) for app in apps.values()):
        return False
    for app in apps.values():
        deployments = app.get("deployments") or {}
        if not isinstance(deployments, dict) or not all(isinstance(d, dict) for d in deployments.values()):
            return False
        for deployment in deployments.values():
            replicas = deployment.get("replicas") or []
            if not isinstance(replicas, list) or not all(isinstance(r, dict) for r in replicas):
                return False
    return True


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
