"""The emulated kube-apiserver: kmock's `KubernetesEmulator` with our fidelity layer.

kmock provides the HTTP serving, discovery from declared resources, the request log, the object
store with history and its DSL for injecting faults (`emulator['get /api/v1/...'] << 500` takes
priority over everything here). This class replaces kmock's naive object handling with `Store`
(metadata, admission, GC) and adds tables, selectors, PUT, patch types and resumable watches.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import dsl, enums, filtering, rendering  # reactions, criteria: not public API

from tests.kube.apiserver import errors, openapi, patches, routes, selectors, tables
from tests.kube.apiserver.registry import Registry, ResourceType, builtin_types, crd_types
from tests.kube.apiserver.store import Event, Obj, Store

_CRD_TYPE = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_BOOKMARK_INTERVAL = 1.0


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    crds: list[dict[str, Any]] = attrs.field(factory=list)
    registry: Registry = attrs.field(factory=Registry, init=False)
    store: Store = attrs.field(init=False)
    # Open watch streams per plural, so tests can wait for a client's watch before changing things.
    active_watches: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    # kmock's reactions in the order they are tried, and the reactions that order was computed for.
    _ordered: list[dsl.Reaction] = attrs.field(factory=list, init=False)
    _ordered_for: tuple[int, ...] = attrs.field(factory=tuple, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.PUT] << self._serve_put
        self.fallback[kmock.method.DELETE] << self._serve_delete
        self.fallback["get /openapi/v3"] << self._serve_openapi_root
        self.fallback["get", re.compile(r"/openapi/v3/.+")] << self._serve_openapi_doc
        for rtype in builtin_types():
            self._register(rtype)
        self.store = Store(self.objects, self.registry)
        crd_type = self.registry.get(*_CRD_TYPE)
        assert crd_type is not None
        for crd in self.crds:
            self._install_crd(self.store.create(crd_type, None, crd))

    # --- plumbing --------------------------------------------------------------------------------

    def _register(self, rtype: ResourceType) -> None:
        self.registry.add(rtype)
        self.resources[rtype.key] = self.registry.discovery_info(rtype)

    def _install_crd(self, crd: Obj) -> None:
        """Serve a CRD's versions and mark it Established, as the apiextensions controller does."""
        for gone in self.registry.remove_crd(crd["metadata"]["name"]):
            del self.resources[gone.key]
        for rtype in crd_types(crd):
            self._register(rtype)
        crd_type = self.registry.get(*_CRD_TYPE)
        assert crd_type is not None
        conditions = [
            {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": c}
            for t, r, c in (
                ("NamesAccepted", "NoConflicts", crd["metadata"]["creationTimestamp"]),
                ("Established", "InitialNamesAccepted", crd["metadata"]["creationTimestamp"]),
            )
        ]
        status = {
            "acceptedNames": crd["spec"]["names"],
            "conditions": conditions,
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        }
        self.store.update(crd_type, None, crd["metadata"]["name"], {"status": status}, subresource="status")

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # Replaces RawHandler.__call__ only to build the Request with our URL parser (see routes).
        body = await raw_request.read()
        route = routes.parse(raw_request.path)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        request = kmock.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode("utf-8", "replace"),
            data=data,
            action=routes.action(raw_request.method, route, raw_request.query.get("watch") in ("true", "1")),
            resource=route.resource,
            namespace=route.namespace,
            name=route.name,
            subresource=route.subresource,
        )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except rendering.StreamingError as exc:  # a watch failed after its headers went out
            response: aiohttp.web.StreamResponse = exc.args[0]
            return response
        except Exception as exc:  # every failure must reach the client as a Status
            return await self._render_error(exc)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """kmock's RawHandler._handle without its cost (KubernetesEmulator._handle is skipped: its naive
        create/patch/delete bookkeeping is what Store replaces).

        kmock asks each reaction whether its view contains the request by replaying every request
        served so far through the view's filters: quadratic in the requests served, and most of the
        emulator's CPU after a few thousand. `_sees` asks about this one request instead."""
        for reaction in self._by_priority():
            if _sees(reaction._source, request) and not reaction._disabled.is_set():
                try:
                    return await reaction(request)
                except rendering.ReactionMismatchError:  # either mismatch or depletion
                    reaction._disabled.set()
                except NotImplementedError:  # matched, but nothing to respond with
                    pass
        raise NotImplementedError(
            "Undefined server behaviour: no reaction matching the request is defined. "
            "Consider adding a catch-all fallback reaction: `kmock.fallback << 404`."
        )

    def _by_priority(self) -> list[dsl.Reaction]:
        """The reactions in kmock's order (priority, then registration); sorted again when they change."""
        reactions = self._payloads
        if tuple(map(id, reactions)) != self._ordered_for:  # ids stay unique: the cache keeps them alive
            # As kmock does: pad mixed-length priorities with zeroes, highest first, stable.
            priorities = [tuple(-p for p in r.priorities) for r in reactions]
            width = max((len(p) for p in priorities), default=0)
            padded = [p + (0,) * (width - len(p)) for p in priorities]
            order = sorted(range(len(reactions)), key=lambda i: padded[i])
            self._ordered = [reactions[i] for i in order]
            self._ordered_for = tuple(map(id, reactions))
        return self._ordered

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, errors.ApiError):
            return aiohttp.web.json_response(exc.status, status=exc.code)
        return await super()._render_error(exc)

    async def _serve_version(self, request: kmock.Request) -> Any:
        # kmock copies short names onto subresources (`namespaces/status`), which makes kubectl
        # reject `ns` as ambiguous; kube lists subresources without them. It also names the core
        # group-version "/v1" instead of "v1", which hides every core kind from kubectl.
        doc: dict[str, Any] = await super()._serve_version(request)
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")
        for entry in doc["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], singularName="", verbs=["get", "patch", "update"])
        return doc

    def _rtype(self, request: kmock.Request) -> ResourceType:
        res = request.resource
        rtype = self.registry.get(res.group, res.version, res.plural) if res else None
        if rtype is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return rtype

    def _namespace(self, rtype: ResourceType, request: kmock.Request) -> str | None:
        return request.namespace if rtype.namespaced else None

    @staticmethod
    def _predicate(request: kmock.Request) -> selectors.Predicate:
        labels = selectors.label_selector(request.params.get("labelSelector"))
        fields = selectors.field_selector(request.params.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    def _render(self, rtype: ResourceType, request: kmock.Request, objs: list[Obj], single: bool) -> Any:
        if tables.wants_table(request.headers.get("Accept", "")):
            include = request.params.get("includeObject", "Metadata")
            return tables.table(rtype, objs, str(self.store.revision), include)
        if single:
            return objs[0]
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": objs,
        }

    # --- verbs -----------------------------------------------------------------------------------

    async def _serve_list(self, request: kmock.Request) -> Any:
        rtype = self._rtype(request)
        objs = self.store.list(rtype, self._namespace(rtype, request), self._predicate(request))
        return self._render(rtype, request, objs, single=False)

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        rtype = self._rtype(request)
        assert request.name is not None
        obj = self.store.get(rtype, self._namespace(rtype, request), request.name)
        if obj is None:
            raise errors.not_found(rtype, request.name)
        return self._render(rtype, request, [obj], single=True)

    async def _serve_create(self, request: kmock.Request) -> Any:
        rtype = self._rtype(request)
        if not isinstance(request.data, dict):
            raise errors.bad_request("the body of the request is not a JSON object")
        async with self._lock:
            obj = self.store.create(rtype, self._namespace(rtype, request), request.data)
            if (rtype.group, rtype.version, rtype.plural) == _CRD_TYPE:
                self._install_crd(obj)
        # kube answers 201; the kubernetes client insists on it. (kmock keeps the status on this
        # fallback reaction afterwards, which is harmless: it only ever serves creations.)
        return kmock.Response(status=201, payload=obj)

    async def _serve_update(self, request: kmock.Request) -> Any:
        rtype = self._rtype(request)
        namespace, name = self._namespace(rtype, request), request.name
        assert name is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        async with self._lock:
            current = self.store.get(rtype, namespace, name)
            if current is None and content_type == patches.APPLY:
                return self.store.create(rtype, namespace, patches.parse_body(content_type, request.body))
            if current is None:
                raise errors.not_found(rtype, name)
            patched = patches.apply_patch(content_type, current, request.body, custom=rtype.crd is not None)
            obj = self.store.update(rtype, namespace, name, patched, request.subresource)
            if (rtype.group, rtype.version, rtype.plural) == _CRD_TYPE and request.subresource is None:
                self._install_crd(obj)
        return obj

    async def _serve_put(self, request: kmock.Request) -> Any:
        rtype = self._rtype(request)
        if request.name is None or not isinstance(request.data, dict):
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        async with self._lock:
            return self.store.update(
                rtype, self._namespace(rtype, request), request.name, request.data, request.subresource
            )

    async def _serve_delete(self, request: kmock.Request) -> Any:
        rtype = self._rtype(request)
        options: Obj = request.data if isinstance(request.data, dict) else {}
        if "propagationPolicy" in request.params:
            options = {**options, "propagationPolicy": request.params["propagationPolicy"]}
        namespace = self._namespace(rtype, request)
        async with self._lock:
            if request.name is not None:
                obj = self.store.delete(rtype, namespace, request.name, options)
                if (rtype.group, rtype.version, rtype.plural) == _CRD_TYPE:
                    for gone in self.registry.remove_crd(request.name):
                        del self.resources[gone.key]
                return obj
            doomed = self.store.list(rtype, namespace, self._predicate(request))
            for obj in doomed:
                self.store.delete(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"], options)
        return self._render(rtype, request, doomed, single=False)

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        rtype = self._rtype(request)
        yield b""  # send the headers now: clients wait for them before they consider the watch open
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        self.active_watches[rtype.plural] += 1
        try:
            async for event in _watch(self.store, rtype, request, self._predicate(request)):
                if not as_table:  # a stored change is serialized once, however many watchers send it
                    yield event.wire if isinstance(event, Event) else event
                    continue
                kind, obj = (
                    (event.type, event.obj) if isinstance(event, Event) else (event["type"], event["object"])
                )
                if kind == "ERROR":
                    yield event
                else:
                    include = request.params.get("includeObject", "Metadata")
                    rv = str(self.store.revision)
                    yield {"type": kind, "object": tables.table(rtype, [obj], rv, include)}
        finally:
            self.active_watches[rtype.plural] -= 1

    async def _serve_openapi_root(self) -> Any:
        return openapi.root(self.registry)

    async def _serve_openapi_doc(self, request: kmock.Request) -> Any:
        return openapi.group_version_doc(self.registry, request.url.path.removeprefix("/openapi/v3/"))


def _sees(view: dsl.View, request: kmock.Request) -> bool:
    """Whether a reaction's view contains the request being served, asking about it alone.

    Filters, priorities and and/or/not groups decide per request; only the views that depend on
    the history (slices like `[:1]`, live streams) replay it, through kmock's own `in`."""
    if isinstance(view, dsl.Root):
        seen = view._requests  # the root records a request at index request.id before serving it
        return (request.id < len(seen) and seen[request.id] is request) or any(r is request for r in seen)
    if type(view) is dsl.Filter:
        return _sees(view._source, request) and _admits(view.criteria, request)
    if type(view) is dsl.Priority:
        return _sees(view._source, request)
    if type(view) is dsl.OrGroup:
        return any(_sees(source, request) for source in view._sources)
    if type(view) is dsl.AndGroup:
        return all(_sees(source, request) for source in view._sources)
    if type(view) is dsl.Exclusion:
        return _sees(view._source, request) and not any(_sees(e, request) for e in view._exclusions)
    return request in view


# id(criteria) -> (the criteria, kept so that the id stays its own; its `_form`).
_FORMS: dict[int, tuple[filtering.Criteria, str]] = {}


def _form(criteria: filtering.Criteria) -> str:
    """What `_admits` can decide by comparing enums: "method" (an HTTP method, maybe with a path),
    "action" (a K8s action alone), or "" (kmock's matching decides)."""
    if id(criteria) not in _FORMS:
        form = ""
        if isinstance(criteria, filtering.HTTPCriteria | filtering.K8sCriteria):
            fields = attrs.fields(type(criteria))
            given = {f.name for f in fields if getattr(criteria, f.name) is not ...}
            if type(criteria) is filtering.HTTPCriteria and isinstance(criteria.method, enums.method):
                form = "method" if given <= {"method", "path"} else ""
            elif type(criteria) is filtering.K8sCriteria and isinstance(criteria.action, enums.action):
                form = "action" if given == {"action"} else ""
        _FORMS[id(criteria)] = (criteria, form)
    return _FORMS[id(criteria)][1]


def _admits(criteria: filtering.Criteria, request: kmock.Request) -> bool:
    """`criteria(request)`; for the criteria the emulator's own reactions use (an HTTP method with a
    path, a K8s action) by comparing enums, which is what kmock's matching of one enum member
    against another amounts to, instead of its general matching by names and values."""
    form = _form(criteria)
    if form == "method" and isinstance(request.method, enums.method):
        assert isinstance(criteria, filtering.HTTPCriteria)
        return criteria.method == request.method and (
            criteria.path is ... or criteria._check(criteria.path, request.url.path, glob=True)
        )
    if form == "action" and (request.action is None or isinstance(request.action, enums.action)):
        assert isinstance(criteria, filtering.K8sCriteria)
        return criteria.action == request.action
    return bool(criteria(request))


async def _watch(
    store: Store, rtype: ResourceType, request: kmock.Request, predicate: selectors.Predicate
) -> AsyncIterator[Obj | Event]:
    """Watch events as kube sends them: initial ADDEDs (unless resuming), then changes (as the
    store's `Event`s; the rest as event dicts)."""
    params = request.params
    namespace = request.namespace if rtype.namespaced else None
    loop = asyncio.get_running_loop()
    timeout = float(params.get("timeoutSeconds") or 0)
    deadline = loop.time() + timeout if timeout > 0 else None
    bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
    since_param = params.get("resourceVersion", "")
    initial = params.get("sendInitialEvents") == "true"
    if not since_param or since_param == "0" or initial:
        since = store.revision
        for obj in store.list(rtype, namespace, predicate):
            yield {"type": "ADDED", "object": obj}
        if initial:  # the watch-list protocol: a bookmark marks the end of the initial state
            meta = {"resourceVersion": str(since), "annotations": {"k8s.io/initial-events-end": "true"}}
            yield {
                "type": "BOOKMARK",
                "object": {"apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": meta},
            }
    else:
        since = int(since_param)
    epoch = store.watch_epoch
    while store.watch_epoch == epoch:
        changed = store.changed()
        try:
            events = store.events_since(since)
        except errors.ApiError as exc:
            yield {"type": "ERROR", "object": exc.status}
            return
        for event in events:
            since = event.rv
            ns = event.obj["metadata"].get("namespace")
            if (
                event.resource == rtype.key
                and (namespace is None or ns == namespace)
                and predicate(event.obj)
            ):
                yield event
        wait = _BOOKMARK_INTERVAL if deadline is None else min(_BOOKMARK_INTERVAL, deadline - loop.time())
        if wait <= 0:
            return
        try:
            await asyncio.wait_for(changed.wait(), timeout=wait)
        except TimeoutError:
            if bookmarks:
                meta = {"resourceVersion": str(since)}
                yield {
                    "type": "BOOKMARK",
                    "object": {"apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": meta},
                }
