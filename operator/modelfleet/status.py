"""Pure status computation: (fleet, RayService, optional Serve details) -> the fleet's status.

Used by the operator (from the RayService status KubeRay writes) and by `modelfleet status` locally
(from Ray Serve's REST status). No clock and no I/O: the caller passes `now`, and the previous status
so transition times survive when nothing changed, which keeps status patches idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from modelfleet.api.problems import Problem
from modelfleet.api.v1alpha1 import (
    AliasStatus,
    AliasTargetStatus,
    Condition,
    FleetPhase,
    ModelFleetStatus,
    ModelState,
    ModelStatus,
    WorkerGroupStatus,
    endpoint_url,
)

MAX_MESSAGE = 300
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MODULE_PREFIX = re.compile(r"^(?:[a-z_][\w]*\.)+(?=[A-Z])")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")

# Ray Serve application status -> model state (DEPLOYING/RUNNING refined with deployment details).
_APP_STATES: dict[str, ModelState] = {
    "NOT_STARTED": "Pending",
    "DEPLOYING": "Deploying",
    "RUNNING": "Ready",
    "DEPLOY_FAILED": "Failed",
    "UNHEALTHY": "Unhealthy",
    "DELETING": "Pending",
}
_SERVING: set[str] = {"Ready", "ScaledToZero"}
# The conditions every status carries: type -> (True when, reason when not). docs/reference.md is generated
# from it; tests/unit/test_reference_docs.py checks fleet_status writes exactly these.
CONDITIONS: dict[str, tuple[str, str]] = {
    "Ready": ("phase is `Ready`", "the phase (`Deploying`, `Degraded`, ...); the message says what"),
    "SpecValid": (
        "the spec passes the operator's semantic checks",
        "`Invalid`; the message lists every problem, each naming the field, the value and the rule",
    ),
    "RayServiceReady": ("KubeRay reports the RayService `Ready`", "`NotReady`"),
    "Upgrading": ("a new Ray cluster is rolling out (reason `UpgradeInProgress`)", "`Stable`"),
}
# Ready-condition reasons with which KubeRay stops working on a RayService until it changes.
_KUBERAY_FAILURES = ("ValidationFailed", "InitializingTimeout")


def clean_message(text: str) -> str:
    """One readable line from a Serve message: no ANSI codes, the exception line of a traceback, short."""
    text = _ANSI.sub("", text or "").strip()
    if "Traceback (most recent call last)" in text:
        # The root cause is the last exception line; the frames and Serve's preamble only bury it.
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
        text = exceptions[-1] if exceptions else lines[-1]
        text = _MODULE_PREFIX.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _models(fleet: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    models = (fleet.get("spec") or {}).get("models") or []
    return [(str(m.get("name")), m) for m in models if isinstance(m, Mapping) and m.get("name")]


def _observed_workers(
    groups: Sequence[Mapping[str, Any]], worker_pods: Mapping[str, tuple[int, int]] | None
) -> list[WorkerGroupStatus]:
    """Each group of the spec with its (ready, desired) worker pods; none when they are not known."""
    if worker_pods is None:
        return []
    return [
        WorkerGroupStatus(
            group=g["name"],
            ready=worker_pods.get(g["name"], (0, 0))[0],
            desired=worker_pods.get(g["name"], (0, 0))[1],
        )
        for g in groups
    ]


def _alias_statuses(fleet: Mapping[str, Any], models: Sequence[ModelStatus]) -> list[AliasStatus]:
    """Each alias's targets with the state of the model serving them (an adapter's: its model's). Read from
    the raw spec, which may be invalid: anything malformed is skipped, a target nothing serves is Unknown."""
    spec = fleet.get("spec") or {}
    state: dict[str, ModelState] = {m.name: m.state for m in models}
    for model in spec.get("models") or []:
        if isinstance(model, Mapping) and model.get("name") in state:
            for adapter in model.get("adapters") or []:
                if isinstance(adapter, Mapping) and isinstance(adapter.get("name"), str):
                    state.setdefault(adapter["name"], state[model["name"]])
    out = []
    for alias in spec.get("aliases") or []:
        if not isinstance(alias, Mapping) or not isinstance(alias.get("name"), str):
            continue
        targets = [
            AliasTargetStatus(model=t["model"], weight=t["weight"], state=state.get(t["model"], "Unknown"))
            for t in alias.get("targets") or []
            if isinstance(t, Mapping) and isinstance(t.get("model"), str) and isinstance(t.get("weight"), int)
        ]
        out.append(AliasStatus(name=alias["name"], targets=targets))
    return out


def _app_statuses(rayservice: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Application statuses of the cluster that serves, or, before any does, of the one being built:
    KubeRay reports a new RayService's applications under `pendingServiceStatus` until its cluster is
    promoted to active. During an upgrade the active cluster still serves, so its statuses count."""
    status = (rayservice or {}).get("status") or {}
    active = status.get("activeServiceStatus") or {}
    if active.get("rayClusterName") or active.get("applicationStatuses"):
        return dict(active.get("applicationStatuses") or {})
    pending = status.get("pendingServiceStatus") or {}
    return dict(pending.get("applicationStatuses") or {})


def _details_state(app: Mapping[str, Any]) -> tuple[ModelState | None, int | None]:
    """From Serve's REST details: replicas that can serve (the smallest deployment of the application:
    a model app is an always-on ingress in front of the engine), and ScaledToZero when a healthy
    deployment is at a target of 0."""
    deployments = list((app.get("deployments") or {}).values())
    if not deployments:
        return None, None
    running = min(sum(1 for r in d.get("replicas") or [] if r.get("state") == "RUNNING") for d in deployments)
    asleep = any(
        d.get("target_num_replicas") == 0 and d.get("status") in ("HEALTHY", "UPSCALING", "DOWNSCALING")
        for d in deployments
    )
    return ("ScaledToZero", 0) if asleep and running == 0 else (None, running)


def _starting(details: Mapping[str, Any]) -> str:
    """What a model's starting replica waits for, from Serve's details: "placement" while Ray has no node
    for it (the autoscaler must add a worker), "loading" once it runs on one (the engine loads), else ""."""
    replicas = [r for d in (details.get("deployments") or {}).values() for r in d.get("replicas") or []]
    starting = [r for r in replicas if r.get("state") == "STARTING"]
    if any(not r.get("node_id") for r in starting):
        return "placement"
    return "loading" if starting else ""


def model_status(
    name: str, app: Mapping[str, Any] | None, details: Mapping[str, Any] | None, waiting_for: str = ""
) -> ModelStatus:
    """The state of one model from its application status (KubeRay's or Serve's) and Serve details.
    `waiting_for` says which worker its replicas wait for when Ray has no node for them yet."""
    source = details if details is not None else app
    if source is None:
        return ModelStatus(name=name, state="Pending", message="not deployed yet")
    state = _APP_STATES.get(str(source.get("status")), "Deploying")
    replicas: int | None = None
    starting = ""
    if details is not None:
        refined, replicas = _details_state(details)
        if refined is not None and state == "Ready":
            state = refined
        elif state == "Ready" and replicas == 0:
            state = "ScaledToZero"  # waking: asked to scale up from zero, no replica runs yet
        starting = _starting(details)
    message = ""
    if starting and state in ("Deploying", "ScaledToZero"):
        what = (waiting_for or "waiting for a worker") if starting == "placement" else "loading the model"
        message = f"Waking: {what}" if state == "ScaledToZero" else what[0].upper() + what[1:]
    elif state not in _SERVING:
        # The root cause sits on the failed deployment (the application says only which one failed).
        deployments = source.get("serveDeploymentStatuses") or source.get("deployments") or {}
        reasons = [clean_message(str(d.get("message") or "")) for d in deployments.values()]
        message = next((r for r in reasons if r), "") or clean_message(str(source.get("message") or ""))
    return ModelStatus(name=name, state=state, replicas=replicas, message=message)


def _worker_groups(fleet: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    workers = (fleet.get("spec") or {}).get("workers") or []
    return [w for w in workers if isinstance(w, Mapping) and isinstance(w.get("name"), str)]


def _waiting_for(
    model: Mapping[str, Any], groups: Sequence[Mapping[str, Any]], workers: Sequence[WorkerGroupStatus]
) -> str:
    """Which worker group a model's unplaced replica waits for: one whose pods can hold it (enough GPUs for
    its share), preferring one that is adding a worker now."""
    gpus = model.get("gpus", 1) if model.get("accelerator", "gpu") == "gpu" else 0
    fits = [g["name"] for g in groups if float(g.get("gpusPerWorker", 1)) >= float(gpus or 0)]
    observed = {w.group: w for w in workers}
    growing = [n for n in fits if n in observed and observed[n].desired > observed[n].ready]
    chosen = (growing or fits or [""])[0]
    if not chosen:
        return ""
    seen = observed.get(chosen)
    counts = f" ({seen.ready}/{seen.desired} ready)" if seen is not None else ""
    return f"waiting for a worker in group {chosen}{counts}"


def _rs_condition(rayservice: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    conditions = ((rayservice or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def _condition_true(rayservice: Mapping[str, Any] | None, kind: str) -> bool:
    found = _rs_condition(rayservice, kind)
    return found is not None and found.get("status") == "True"


def kuberay_failure(rayservice: Mapping[str, Any] | None) -> str:
    """KubeRay's reason for giving up on the RayService ("" when it has not): it refused the spec
    (ValidationFailed) or the cluster never came up in time (InitializingTimeout)."""
    ready = _rs_condition(rayservice, "Ready")
    if ready is None or ready.get("status") == "True" or ready.get("reason") not in _KUBERAY_FAILURES:
        return ""
    return clean_message(f"KubeRay {ready.get('reason')}: {ready.get('message') or ''}".strip())


def _serve_endpoints_missing(rayservice: Mapping[str, Any] | None) -> bool:
    """KubeRay reports the RayService not ready (no serve endpoint behind the Service). Only a RayService
    KubeRay has written status for can say so; the local backend passes none."""
    return _rs_condition(rayservice, "Ready") is not None and not _condition_true(rayservice, "Ready")


def _phase(models: Sequence[ModelStatus], rayservice: Mapping[str, Any] | None, invalid: bool) -> FleetPhase:
    if invalid:
        return "Invalid"
    if rayservice is None:
        return "Pending"
    if kuberay_failure(rayservice):
        return "Failed"
    if _condition_true(rayservice, "UpgradeInProgress"):
        return "Upgrading"
    states = [m.state for m in models]
    serving = sum(1 for s in states if s in _SERVING)
    if states and serving == len(states):
        # Every application runs, but requests reach them only through serve endpoints: never Ready
        # while KubeRay counts none (still initializing, or they dropped to zero).
        if not _serve_endpoints_missing(rayservice):
            return "Ready"
        reason = (_rs_condition(rayservice, "Ready") or {}).get("reason")
        return "Degraded" if reason == "ZeroServeEndpoints" else "Deploying"
    if states and all(s == "Failed" for s in states):
        return "Failed"
    if any(s in ("Failed", "Unhealthy") for s in states):
        return "Degraded"
    return "Deploying"


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int | None) -> Condition:
    status: Any = "True" if ok else "False"
    return Condition(type=kind, status=status, reason=reason, message=message, observed_generation=generation)


def _keep_transition_times(conditions: list[Condition], previous: Mapping[str, Any] | None, now: str) -> None:
    before = {c.get("type"): c for c in ((previous or {}).get("conditions") or [])}
    for condition in conditions:
        old = before.get(condition.type)
        same = old is not None and old.get("status") == condition.status
        condition.last_transition_time = str(old.get("lastTransitionTime")) if same and old else now


def fleet_status(
    fleet: Mapping[str, Any],
    rayservice: Mapping[str, Any] | None,
    serve_details: Mapping[str, Any] | None = None,
    *,
    problems: Sequence[Problem] = (),
    apply_error: str = "",
    previous: Mapping[str, Any] | None = None,
    now: str = "",
    worker_pods: Mapping[str, tuple[int, int]] | None = None,
) -> ModelFleetStatus:
    """The fleet's status. `fleet` is the raw object (it may be invalid); `serve_details` is the body of
    Serve's `GET /api/serve/applications/` when the caller can reach the dashboard; `apply_error` is the
    API server's refusal of the rendered RayService, if any; `worker_pods` is {group: (ready, desired)} of
    the serving cluster's worker pods, when the caller watches them."""
    metadata = fleet.get("metadata") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace") or "default")
    generation = metadata.get("generation")
    apps = _app_statuses(rayservice)
    detail_apps: Mapping[str, Any] = (serve_details or {}).get("applications") or {}
    groups = _worker_groups(fleet)
    workers = _observed_workers(groups, worker_pods)
    models = [
        model_status(
            name,
            apps.get(name),
            detail_apps.get(name) if serve_details is not None else None,
            _waiting_for(spec, groups, workers),
        )
        for name, spec in _models(fleet)
    ]
    invalid = bool(problems)
    phase = "Failed" if apply_error and not invalid else _phase(models, rayservice, invalid)
    serving = sum(1 for m in models if m.state in _SERVING)
    troubled = [m for m in models if m.state in ("Failed", "Unhealthy")]
    refused = kuberay_failure(rayservice)
    if invalid:
        message = str(problems[0]) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    elif apply_error:
        message = apply_error
    elif refused:
        message = refused
    elif troubled:
        message = f"{troubled[0].name}: {troubled[0].message or troubled[0].state}"
    else:
        message = ""
    rs_ready = _condition_true(rayservice, "Ready")
    upgrading = phase == "Upgrading"
    summary = message or f"{serving}/{len(models)} models ready"
    conditions = [
        _condition("Ready", phase == "Ready", phase, summary, generation),
        _condition(
            "SpecValid",
            not invalid,
            "Invalid" if invalid else "Valid",
            "; ".join(str(p) for p in problems)[:1000],
            generation,
        ),
        _condition(
            "RayServiceReady",
            rs_ready,
            "Ready" if rs_ready else "NotReady",
            "" if rayservice is not None else "RayService not created yet",
            generation,
        ),
        _condition("Upgrading", upgrading, "UpgradeInProgress" if upgrading else "Stable", "", generation),
    ]
    _keep_transition_times(conditions, previous, now)
    return ModelFleetStatus(
        phase=phase,
        ready=f"{serving}/{len(models)}",
        endpoint=endpoint_url(name, namespace) if rayservice is not None else "",
        ray_service=name if rayservice is not None else "",
        message=message,
        observed_generation=generation,
        models=models,
        workers=workers,
        ready_workers=(
            f"{sum(w.ready for w in workers)}/{sum(w.desired for w in workers)}"
            if worker_pods is not None
            else ""
        ),
        aliases=_alias_statuses(fleet, models),
        conditions=conditions,
    )


def status_document(status: ModelFleetStatus) -> dict[str, Any]:
    """The status as the API stores it (camelCase, no nulls)."""
    out: dict[str, Any] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return out
