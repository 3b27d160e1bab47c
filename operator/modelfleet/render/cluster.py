"""Values for rayClusterConfig: head, worker groups, environment, volumes and security contexts."""

from __future__ import annotations

from typing import Any

from modelfleet.api.v1alpha1 import ModelFleetSpec, WorkerGroup
from modelfleet.render.routes import haproxy_volume
from modelfleet_contract.wire import (
    API_KEYS_DIR,
    API_KEYS_DIR_ENV,
    HAPROXY_BINARY_ENV,
    HAPROXY_DIR,
    HAPROXY_WRAPPER_KEY,
)

RAY_VERSION = "2.60.0"
GPU_RESOURCE = "nvidia.com/gpu"
# The ray user of the rayproject/ray images (uid 1000, gid 100); our serving image keeps it.
RAY_UID = 1000
RAY_GID = 100
# How long an idle worker is kept before the autoscaler removes it (GPU nodes cost money).
IDLE_TIMEOUT_SECONDS = 60

# Ray Serve's high-throughput mode (DESIGN §4): HAProxy instead of the Python proxy, gRPC between
# replicas, and direct streaming (each model's server is its own HTTP ingress; serving_app/server.py adds
# our auth, /healthz and /v1/infer to it). The HAProxy files go to /tmp, which is writable.
# In that mode HAProxy asks each model's request router (LLMRouter) for a replica and gives up after
# RAY_SERVE_HAPROXY_INGRESS_REQUEST_ROUTER_TIMEOUT_S (5 s by default) with a 503; for a model at zero
# replicas the router answers only once a replica has loaded, so the bound must cover a wake from zero
# (tests/serving caught the 503). It only bounds a hung router otherwise.
WAKE_TIMEOUT_S = 900
HIGH_THROUGHPUT_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_INGRESS_REQUEST_ROUTER_TIMEOUT_S": str(WAKE_TIMEOUT_S),
    "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
}
# On Kubernetes Ray runs HAProxy through ModelFleet's wrapper (serving_app/haproxy.py), from the fleet's
# ConfigMap (render/routes.py): the fleet's endpoint routed by the body's model, with no Python hop.
# Not set: RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY. It would let HAProxy show the request router the
# body (for adapters and prefix-aware routing on a model's prefix), but HAProxy then waits for the whole body
# for up to RAY_SERVE_HAPROXY_INGRESS_REQUEST_ROUTER_TIMEOUT_S (the wake bound above, 900 s) before our
# front door sees a byte: a client trickling its body would be held there instead of cut off at
# limits.bodyTimeoutSeconds (tests/serving/test_front_door.py caught it). A model's own server loads the
# adapter a request names instead (serving_app/server.py).


POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RAY_UID,
    "runAsGroup": RAY_GID,
    "fsGroup": RAY_GID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}


def _number(value: float) -> str:
    """2.0 -> "2", 0.5 -> "0.5": quantities and rayStartParams want the short form."""
    return str(int(value)) if float(value).is_integer() else str(value)


def env(spec: ModelFleetSpec) -> list[dict[str, Any]]:
    """Environment of every Ray container. Secrets appear only as secretKeyRef."""
    out: list[dict[str, Any]] = []
    if spec.model_cache is not None:
        out.append({"name": "HF_HOME", "value": spec.model_cache.mount_path})
    if spec.hugging_face_token is not None:
        ref = spec.hugging_face_token
        out.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.secret_name, "key": ref.key}}}
        )
    if spec.all_api_keys:
        out.append({"name": API_KEYS_DIR_ENV, "value": API_KEYS_DIR})
    if spec.high_throughput:
        ht_env = {**HIGH_THROUGHPUT_ENV, HAPROXY_BINARY_ENV: f"{HAPROXY_DIR}/{HAPROXY_WRAPPER_KEY}"}
        out.extend({"name": name, "value": value} for name, value in sorted(ht_env.items()))
    return out


# How long a worker's raylet waits for a lost GCS before it exits (Ray's default: 60 s). Without GCS fault
# tolerance (not configured by ModelFleet) a worker can never rejoin a restarted head: it must exit and be
# replaced, so waiting only delays recovery. 20 s still rides out a head that is merely busy. Measured in
# tests/e2e (head killed -> Ready again).
GCS_RECONNECT_TIMEOUT_S = 20


def worker_env(spec: ModelFleetSpec) -> list[dict[str, Any]]:
    """Environment of worker containers: every Ray container's, plus how soon to give up a lost head."""
    return [
        *env(spec),
        {"name": "RAY_gcs_rpc_server_reconnect_timeout_s", "value": str(GCS_RECONNECT_TIMEOUT_S)},
    ]


def api_keys_volume(spec: ModelFleetSpec) -> dict[str, Any]:
    """The fleet's API keys as one projected volume: each Secret key at `<secretName>/<key>`.

    Mounted, not in the environment, so the kubelet rewrites a key when its Secret changes and the serving
    app picks it up without a restart. `optional`: a missing Secret or key accepts nothing (the serving app
    logs which) instead of keeping every Ray pod from starting; deleting it revokes the key.
    """
    by_secret: dict[str, list[dict[str, str]]] = {}
    for ref in spec.all_api_keys:
        by_secret.setdefault(ref.secret_name, []).append({"key": ref.key, "path": ref.path})
    sources = [
        {"secret": {"name": name, "items": sorted(items, key=lambda i: i["path"]), "optional": True}}
        for name, items in sorted(by_secret.items())
    ]
    # 0440 (group: the ray user's group), readable by the serving processes only.
    return {"name": "api-keys", "projected": {"defaultMode": 0o440, "sources": sources}}


def volumes(spec: ModelFleetSpec, fleet_name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts): shared memory for the engines, the API keys and the model cache when set,
    and in high-throughput mode the fleet's HAProxy ConfigMap."""
    vols: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if spec.all_api_keys:
        vols.append(api_keys_volume(spec))
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
    if spec.model_cache is not None:
        vols.append(
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.model_cache.claim_name}}
        )
        mounts.append({"name": "model-cache", "mountPath": spec.model_cache.mount_path})
    if spec.high_throughput:
        volume, mount = haproxy_volume(fleet_name)
        vols.append(volume)
        mounts.append(mount)
    return vols, mounts


def head_values(spec: ModelFleetSpec) -> dict[str, Any]:
    """The head group: no GPUs, and no model replicas (num-cpus 0) so a busy model never starves
    the GCS, the Serve controller, the proxy or the router."""
    cpu, memory = _number(spec.head.cpus), spec.head.memory
    return {
        "ray_start_params": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
    }


def worker_values(group: WorkerGroup) -> dict[str, Any]:
    """One worker group; requests equal limits so GPU pods get the Guaranteed QoS class."""
    resources = {"cpu": _number(group.cpus_per_worker), "memory": group.memory_per_worker}
    if group.gpus_per_worker > 0:
        resources[GPU_RESOURCE] = str(group.gpus_per_worker)
    return {
        "name": group.name,
        "min_workers": group.min_workers,
        "max_workers": group.max_workers,
        "node_selector": dict(sorted(group.node_selector.items())),
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True) for t in group.tolerations],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }


def autoscaling_enabled(spec: ModelFleetSpec) -> bool:
    """The in-tree autoscaler runs when any worker group can change size."""
    return any(group.min_workers < group.max_workers for group in spec.workers)
