"""One reconcile for a fleet, whatever woke it: validate -> render -> server-side apply the owned RayService,
NetworkPolicy and HAProxy ConfigMap when they differ -> compute status -> patch the fleet's status only when
it changed.

Reads like KubeRay's `Reconcile`: fetch, validate, reconcile the child, calculate status, write status if it
changed. Kubernetes API errors are never swallowed: transient ones become `kopf.TemporaryError` (kopf
retries after a fixed 1 s for a conflict, 5 s otherwise), permanent ones become a `Failed` status with the
API's message and a `kopf.PermanentError`. Each change's Event is posted as the change is made.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi, NetworkingV1Api
from kubernetes.client.exceptions import ApiException
from urllib3 import Retry
from urllib3.exceptions import HTTPError

from modelfleet.api.problems import Problem
from modelfleet.api.v1alpha1 import GROUP, PLURAL, VERSION
from modelfleet.api.validation import validate_fleet
from modelfleet.render import DEFAULT_IMAGE, render, render_config_map, render_network_policy
from modelfleet.render.network_policy import ControlPlane, policy_name
from modelfleet.render.routes import config_map_name
from modelfleet.serve_details import Fetch, serving_cluster, serving_cluster_name
from modelfleet.status import fleet_status, status_document

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayservices"
# Owner of the fields we render in server-side apply (managedFields); `kubectl ... --field-manager` names it.
FIELD_MANAGER = "modelfleet-operator"
# Statuses worth retrying: conflicts, throttling, and the server or its proxies being unwell.
TRANSIENT_STATUSES = {409, 429, 500, 502, 503, 504}
# Rendered fleets kept (10-20 KB of JSON each); beyond it the least recently reconciled is rendered again.
PLAN_CACHE_SIZE = 1024

# Every Kubernetes call's (connect, read) timeout in seconds: an API server that stops answering costs a
# reconcile this long, then a retry (kopf's own calls have theirs in handlers.py).
REQUEST_TIMEOUT_S = (10.0, 30.0)

EventSink = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)
Event = tuple[str, str, str]
# Every Event the operator posts on a fleet: reason -> (type, when). Posted only through `event`, so none goes
# undocumented (docs/reference.md is generated from this).
EVENTS: dict[str, tuple[str, str]] = {
    "Created": ("Normal", "the operator created the fleet's RayService"),
    "Updated": (
        "Normal",
        "a new generation of the fleet changed the RayService (applied in place or rolled)",
    ),
    "DriftCorrected": (
        "Normal",
        "a field the operator renders was edited on the RayService and was set back",
    ),
    "NetworkPolicyCreated": (
        "Normal",
        "the fleet's NetworkPolicy was created (or recreated after a deletion)",
    ),
    "NetworkPolicyUpdated": (
        "Normal",
        "the fleet's NetworkPolicy was changed: a new spec, or a hand edit set back",
    ),
    "NetworkPolicyDeleted": (
        "Normal",
        "the fleet turned its NetworkPolicy off (`networkPolicy.enabled: false`)",
    ),
    "ConfigMapCreated": (
        "Normal",
        "the HAProxy ConfigMap of a high-throughput fleet was created (or recreated)",
    ),
    "ConfigMapUpdated": (
        "Normal",
        "the HAProxy ConfigMap changed: the models changed, or a hand edit set back",
    ),
    "ConfigMapDeleted": ("Normal", "the fleet left high-throughput mode (`highThroughput: false`)"),
    "Invalid": ("Warning", "the spec fails a semantic check; posted once per set of problems"),
    "ApplyFailed": ("Warning", "the API server refused an object the fleet owns (RBAC, schema); not retried"),
    "NameTaken": (
        "Warning",
        "an object with a name the fleet renders exists and is not the fleet's: left as it is, the fleet "
        "`Failed` until it is gone",
    ),
    "ModelFailed": ("Warning", "a model's application failed to deploy, with its root cause"),
    "FleetReady": ("Normal", "the fleet became `Ready`, with its endpoint"),
}


def event(reason: str, message: str) -> Event:
    """An Event of a documented reason, with its type."""
    return (EVENTS[reason][0], reason, message)


@dataclass(frozen=True)
class OwnedKind:
    """How the operator reads, applies and deletes one kind of object a fleet owns besides its RayService."""

    kind: str
    compared: tuple[str, ...]  # the top-level fields we render and keep in line (spec, data)
    read: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]

    @classmethod
    def on(cls, kind: str, compared: tuple[str, ...], api: Any, resource: str) -> OwnedKind:
        """The kind through a Kubernetes client API's `{read,patch,delete}_namespaced_<resource>`."""
        calls = (getattr(api, f"{verb}_namespaced_{resource}") for verb in ("read", "patch", "delete"))
        return cls(kind, compared, *calls)


@dataclass
class Outcome:
    """What a reconcile did, for logs, metrics and tests."""

    action: str  # created | updated | drift-corrected | unchanged | invalid | failed
    phase: str
    status_changed: bool
    events: list[Event] = field(default_factory=list)


class TimedApiClient(ApiClient):
    """The Kubernetes client's ApiClient with REQUEST_TIMEOUT_S on every call that names no timeout of its
    own (the client's default is none: a silent API server would hold a reconcile's thread for ever), and a
    read that timed out not retried by urllib3 (that would cost it four times over): kopf retries the
    reconcile instead."""

    def __init__(self, configuration: Configuration | None = None) -> None:
        configuration = configuration or Configuration.get_default_copy()
        configuration.retries = Retry(total=2, read=0, redirect=0)
        super().__init__(configuration)

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = REQUEST_TIMEOUT_S
        return super().call_api(*args, **kwargs)


class NotOurs(Exception):
    """An object with the name the fleet renders exists and is not the fleet's (`ours`)."""

    def __init__(self, kind: str, namespace: str, name: str, fleet: str) -> None:
        super().__init__(
            f"{kind} {namespace}/{name} exists and is not this fleet's (it has no ownerReference to "
            f"ModelFleet {namespace}/{fleet}): the operator changes and deletes nothing of it. Delete or "
            "rename that object, or give the fleet another name."
        )


def owned_by(live: Mapping[str, Any] | None, fleet: Mapping[str, Any]) -> bool:
    """Whether `live` names the fleet (by uid) among its owners: what deleting it needs."""
    uid = fleet["metadata"].get("uid")
    owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == uid for o in owners)


def ours(live: Mapping[str, Any], fleet: Mapping[str, Any]) -> bool:
    """Whether the operator may apply over `live`: the fleet owns it, or the operator's field manager made it
    (its owner reference removed by hand is drift, set back; an object someone else made is not ours)."""
    managers = (live.get("metadata") or {}).get("managedFields") or []
    return owned_by(live, fleet) or any(m.get("manager") == FIELD_MANAGER for m in managers)


def in_line(
    desired: Mapping[str, Any], live: Mapping[str, Any], compared: tuple[str, ...], preview: Callable[[], Any]
) -> bool:
    """Whether applying `desired` would change nothing of `live` (its `compared` fields, labels, owners).

    First without a call: every field we render is there with our value (`is_subset`). When not, it may
    still be that nothing would change: a list entry another field manager added (an env var a policy
    engine injects) makes the lists differ while our entries are all there. Then the server says: a
    server-side dry-run apply (`preview`) merges exactly as the real one would, so only a change the apply
    would make counts as drift, and foreign entries never loop."""
    meta = live.get("metadata") or {}

    def rendered(obj: Mapping[str, Any]) -> list[Any]:
        obj_meta = obj.get("metadata") or {}
        return [obj.get(key) for key in compared] + [
            obj_meta.get("labels") or {},
            obj_meta.get("ownerReferences") or [],
        ]

    if all(is_subset(desired[key], live.get(key)) for key in compared) and (
        is_subset(desired["metadata"]["labels"], meta.get("labels") or {})
        and is_subset(desired["metadata"]["ownerReferences"], meta.get("ownerReferences") or [])
    ):
        return True
    would_be = preview()
    return would_be is not None and rendered(would_be) == rendered(live)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every value we render is present in the live object. The API server adds defaults
    (e.g. `protocol: TCP` on container ports), so equality would make the operator fight itself;
    lists must keep their length, so added or removed entries still count as drift."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
        )
    if isinstance(desired, int | float) and isinstance(actual, int | float) and not isinstance(desired, bool):
        return float(desired) == float(actual)
    return bool(desired == actual)


def _temporary(error: Exception, what: str) -> kopf.TemporaryError:
    status = getattr(error, "status", None)
    delay = 1 if status == 409 else 5
    return kopf.TemporaryError(f"{what}: {_describe(error)}", delay=delay)


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}: {_api_message(error)}"
    return f"{type(error).__name__}: {error}"


def _api_message(error: ApiException) -> str:
    import json

    try:
        return str(json.loads(error.body or "{}").get("message") or error.body)
    except ValueError:
        return str(error.body)


def _is_transient(error: Exception) -> bool:
    if isinstance(error, ApiException):
        return error.status in TRANSIENT_STATUSES or error.status == 0
    return isinstance(error, HTTPError | OSError)


class Reconciler:
    """Reconciles fleets with one Kubernetes client; `emit` posts Events on the fleet."""

    def __init__(
        self,
        api: CustomObjectsApi,
        *,
        default_image: str = DEFAULT_IMAGE,
        serve_details: Fetch | None = None,
        control: ControlPlane | None = None,
        networking: NetworkingV1Api | None = None,
        core: CoreV1Api | None = None,
        worker_pods: Callable[[str, str], Mapping[str, tuple[int, int]]] | None = None,
    ) -> None:
        """`serve_details(namespace, rayservice)` reads Serve's application details from the serving
        cluster (replicas, scale to zero), or None; without it status rests on KubeRay's alone.
        `control` says where the operators calling a fleet's dashboard run (its NetworkPolicy lets them).
        `worker_pods(namespace, ray_cluster)` gives {group: (ready, desired)} worker pods (workers.py)."""
        self.worker_pods = worker_pods
        self.api = api
        self.default_image = default_image
        self.serve_details = serve_details
        self.control = control or ControlPlane()
        self._networking = networking
        self._core = core
        # spec key -> (the rendered RayService as JSON, or None; problems). JSON: compact, and loading it
        # gives each caller its own copy faster than a deep copy would.
        self._plans: OrderedDict[str, tuple[str | None, list[Problem]]] = OrderedDict()
        self._plans_lock = threading.Lock()
        # One reconcile per fleet at a time (as a controller's work queue guarantees): kopf runs the handlers
        # of a fleet and of its RayService and NetworkPolicy concurrently, and two reconciles that both see
        # no RayService would both create it (caught by tests/kube: two Created events for one fleet).
        self._fleet_locks: dict[str, threading.Lock] = {}
        self._fleet_locks_lock = threading.Lock()

    def plan(self, fleet: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
        """(the RayService to apply, problems): see `plan_all`."""
        owned, problems = self.plan_all(fleet)
        return (None if owned is None else owned[0]), problems

    def plan_all(self, fleet: dict[str, Any]) -> tuple[list[dict[str, Any] | None] | None, list[Problem]]:
        """([the RayService, the NetworkPolicy or None when disabled, the HAProxy ConfigMap or None on the
        standard path], problems): the fleet validated and rendered, or None and why not.

        Memoized on what they depend on (name, namespace, spec; the image default is fixed per process):
        most reconciles follow a status change of the RayService and see a spec already rendered, and
        validation (CEL) plus rendering are most of the operator's CPU. The caller gets its own copy.
        """
        meta = fleet.get("metadata") or {}
        inputs = {
            "apiVersion": fleet.get("apiVersion"),
            "kind": fleet.get("kind"),
            "metadata": {key: meta[key] for key in ("name", "namespace") if key in meta},
            "spec": fleet.get("spec"),
        }
        key = json.dumps(inputs, sort_keys=True, default=str)
        with self._plans_lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
        if found is None:
            parsed, problems = validate_fleet(json.loads(key))
            desired = (
                None
                if parsed is None
                else [
                    render(parsed, default_image=self.default_image),
                    render_network_policy(parsed, self.control),
                    render_config_map(parsed),
                ]
            )
            found = (None if desired is None else json.dumps(desired), problems)
            with self._plans_lock:
                self._plans[key] = found
                while len(self._plans) > PLAN_CACHE_SIZE:
                    self._plans.popitem(last=False)
        rendered, problems = found
        return (None if rendered is None else json.loads(rendered)), list(problems)

    def _get(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One custom object, or None when it does not exist."""
        try:
            found = self.api.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], found)

    def get_rayservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(RAY_GROUP, RAY_VERSION, RAY_PLURAL, namespace, name)

    def get_fleet(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(GROUP, VERSION, PLURAL, namespace, name)

    def reconcile(
        self, fleet: dict[str, Any], emit: EventSink, *, rayservice: dict[str, Any] | None = None
    ) -> Outcome:
        """Bring the owned RayService and the fleet's status in line with the fleet.

        `rayservice` is the live RayService when the caller has just received it (a watch event): one
        read less. A stale copy is harmless: a replace then fails on its resourceVersion and is retried.
        """
        metadata = fleet["metadata"]
        namespace, name = metadata.get("namespace") or "default", metadata["name"]
        try:
            with self._fleet_lock(f"{namespace}/{name}"):
                return self._reconcile(fleet, namespace, name, emit, rayservice)
        except (ApiException, HTTPError, OSError) as error:
            if _is_transient(error):
                raise _temporary(error, f"reconciling ModelFleet {namespace}/{name}") from error
            raise

    def _fleet_lock(self, key: str) -> threading.Lock:
        with self._fleet_locks_lock:
            return self._fleet_locks.setdefault(key, threading.Lock())

    def _reconcile(
        self,
        fleet: dict[str, Any],
        namespace: str,
        name: str,
        emit: EventSink,
        rayservice: dict[str, Any] | None,
    ) -> Outcome:
        owned, problems = self.plan_all(fleet)
        current = rayservice if rayservice is not None else self.get_rayservice(namespace, name)
        events: list[Event] = []

        def post(change: Event) -> None:
            """An Event for a change the moment it is made: a later step that fails (kopf retries) must not
            swallow it, since the retry finds the change made and has nothing to say."""
            events.append(change)
            emit(*change)

        action = "unchanged"
        if owned is None:
            action = "invalid"
            summary = "; ".join(str(p) for p in problems)
            if not _already_invalid_for(fleet.get("status") or {}, summary):
                post(event("Invalid", f"spec is invalid, RayService left as it is: {summary}"))
        else:
            desired, policy, config_map = owned
            assert desired is not None
            kopf.adopt(desired, owner=cast(kopf.Body, fleet))
            # The policy and the ConfigMap first: Ray pods never run unguarded because a policy could not be
            # applied, and they mount the ConfigMap (its HAProxy wrapper) to start.
            try:
                if current is not None and not ours(current, fleet):
                    raise NotOurs("RayService", namespace, name, name)
                for kind, wanted, fallback in zip(
                    self._owned_kinds(),
                    (policy, config_map),
                    (policy_name(name), config_map_name(name)),
                    strict=True,
                ):
                    what = f"the {kind.kind} of {namespace}/{name}"
                    owned_event = self._apply_owned(kind, wanted, fleet, namespace, fallback)
                    if owned_event:
                        post(owned_event)
                what = f"RayService {namespace}/{name}"
                current, action = self._apply(desired, current, fleet)
            except NotOurs as error:
                # Never adopted: applying would take the object over, and deleting the fleet would delete it.
                status, changed = self._write_status(fleet, None, [], apply_error=str(error))
                if (fleet.get("status") or {}).get("message") != str(error):
                    post(event("NameTaken", str(error)))
                return Outcome(action="failed", phase=status["phase"], status_changed=changed, events=events)
            except ApiException as error:
                if _is_transient(error):
                    raise
                # Permanent (403 RBAC, 422 from the schema...): say so on the fleet, stop retrying.
                refusal = f"the API server refused {what}: {_describe(error)}"
                self._write_status(fleet, current, [], apply_error=refusal)
                emit(*event("ApplyFailed", refusal))
                raise kopf.PermanentError(refusal) from error
            if action != "unchanged":
                reason = {"created": "Created", "updated": "Updated", "drift-corrected": "DriftCorrected"}[
                    action
                ]
                post(event(reason, f"RayService {namespace}/{name} {action.replace('-', ' ')}"))
        status, changed = self._write_status(fleet, current, problems)
        for transition in _transition_events(fleet.get("status") or {}, status):
            post(transition)
        return Outcome(action=action, phase=status["phase"], status_changed=changed, events=events)

    def _apply(
        self, desired: dict[str, Any], current: dict[str, Any] | None, fleet: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """Server-side apply of the rendered RayService, when it is missing or differs from the live one.

        Apply (field manager `modelfleet-operator`, conflicts forced) owns exactly the fields we render:
        one of them edited by hand is set back, while what others add beside them (an Argo CD label, an
        annotation, KubeRay's bookkeeping) stays. No resourceVersion is needed: the server merges.
        """
        metadata = desired["metadata"]

        def apply(**dry_run: Any) -> Any:
            return self.api.patch_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                metadata["namespace"],
                RAY_PLURAL,
                metadata["name"],
                desired,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",  # JSON is YAML
                **dry_run,
            )

        if current is not None and in_line(desired, current, ("spec",), lambda: apply(dry_run="All")):
            return current, "unchanged"
        applied = apply()
        if current is None:
            if applied is None:
                # The Kubernetes client maps only a 200 reply to a body; an apply that creates gets 201 and
                # returns None. Status computed from None would say "no RayService" (Pending) for a
                # RayService that exists, and could stick: read it.
                applied = self.get_rayservice(metadata["namespace"], metadata["name"])
            return cast(dict[str, Any], applied), "created"
        observed = (fleet.get("status") or {}).get("observedGeneration")
        drift = observed is not None and observed == fleet["metadata"].get("generation")
        return cast(dict[str, Any], applied), "drift-corrected" if drift else "updated"

    @property
    def networking(self) -> NetworkingV1Api:
        if self._networking is None:
            self._networking = NetworkingV1Api(self.api.api_client)
        return self._networking

    @property
    def core(self) -> CoreV1Api:
        if self._core is None:
            self._core = CoreV1Api(self.api.api_client)
        return self._core

    def _owned_kinds(self) -> tuple[OwnedKind, OwnedKind]:
        """The NetworkPolicy, then the HAProxy ConfigMap: applied in that order, before the RayService."""
        return (
            OwnedKind.on("NetworkPolicy", ("spec",), self.networking, "network_policy"),
            OwnedKind.on("ConfigMap", ("data",), self.core, "config_map"),
        )

    def _apply_owned(
        self,
        kind: OwnedKind,
        desired: dict[str, Any] | None,
        fleet: dict[str, Any],
        namespace: str,
        name: str,
    ) -> Event | None:
        """Server-side apply of one owned object beside the RayService (NetworkPolicy, ConfigMap) when it is
        missing or differs; delete ours when the fleet no longer has it (`desired` None; `name` is its name).
        Returns the event to post, if anything changed."""
        object_name = (desired or {}).get("metadata", {}).get("name") or name
        try:
            found = kind.read(object_name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            found = None
        # The live object as the API server spells it (camelCase), to compare with what we render.
        live = None if found is None else self.api.api_client.sanitize_for_serialization(found)
        if desired is None:
            if not owned_by(live, fleet):
                return None  # nothing of ours to remove (an object of that name made by someone else stays)
            try:
                kind.delete(object_name, namespace)
            except ApiException as error:
                if error.status == 404:
                    return None  # gone meanwhile (by hand, or the garbage collector): what we wanted
                raise
            return event(f"{kind.kind}Deleted", f"{kind.kind} {namespace}/{object_name} deleted")
        if live is not None and not ours(live, fleet):
            raise NotOurs(kind.kind, namespace, object_name, fleet["metadata"]["name"])
        kopf.adopt(desired, owner=cast(kopf.Body, fleet))

        def apply(**dry_run: Any) -> Any:
            return kind.patch(
                object_name,
                namespace,
                desired,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                **dry_run,
            )

        def preview() -> Any:
            return self.api.api_client.sanitize_for_serialization(apply(dry_run="All"))

        if live is not None and in_line(desired, live, kind.compared, preview):
            return None
        apply()
        verb = "created" if live is None else "updated"
        return event(f"{kind.kind}{verb.title()}", f"{kind.kind} {namespace}/{object_name} {verb}")

    def _write_status(
        self,
        fleet: dict[str, Any],
        rayservice: dict[str, Any] | None,
        problems: list[Problem],
        apply_error: str = "",
    ) -> tuple[dict[str, Any], bool]:
        previous = fleet.get("status") or {}
        details = None
        if self.serve_details is not None and not problems and serving_cluster(rayservice):
            assert rayservice is not None
            meta = rayservice["metadata"]
            details = self.serve_details(meta.get("namespace") or "default", meta["name"])
        workers = None
        if self.worker_pods is not None and not problems:
            cluster = serving_cluster_name(rayservice)
            meta = (rayservice or {}).get("metadata") or {}
            workers = self.worker_pods(meta.get("namespace") or "default", cluster) if cluster else {}
        computed = fleet_status(
            fleet,
            rayservice,
            details,
            problems=problems,
            apply_error=apply_error,
            previous=previous,
            now=now_rfc3339(),
            worker_pods=workers,
        )
        status = status_document(computed)
        if status == previous:
            return status, False
        metadata = fleet["metadata"]
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            metadata.get("namespace") or "default",
            PLURAL,
            metadata["name"],
            {"status": status},
        )
        return status, True


def _already_invalid_for(previous: dict[str, Any], summary: str) -> bool:
    """True when the fleet was already Invalid for the same reasons, so the Event is not repeated."""
    return previous.get("phase") == "Invalid" and any(
        c.get("type") == "SpecValid" and c.get("message") == summary[:1000]
        for c in previous.get("conditions") or []
    )


def _transition_events(previous: dict[str, Any], status: dict[str, Any]) -> list[Event]:
    """Events for models that just failed and for a fleet that just became ready."""
    events: list[Event] = []
    before = {m.get("name"): m.get("state") for m in previous.get("models") or []}
    for model in status.get("models") or []:
        if model["state"] == "Failed" and before.get(model["name"]) != "Failed":
            events.append(event("ModelFailed", f"{model['name']}: {model.get('message', '')}"))
    if status["phase"] == "Ready" and previous.get("phase") != "Ready":
        events.append(event("FleetReady", f"{status['ready']} models ready at {status['endpoint']}"))
    return events
