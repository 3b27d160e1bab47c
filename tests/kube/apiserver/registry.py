"""What the emulated API server serves: built-in kinds (from kmock's bundled discovery) and CRDs.

Every served resource is a `ResourceType`; CRD-backed ones carry the CRD so that writes can be
validated and tables rendered from its printer columns.
"""

from __future__ import annotations

import functools
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import kmock
import yaml

KUBERAY_DIR = pathlib.Path("/work/shared/kuberay")

# Groups of the bundled (K3s) discovery that no client of ours uses and that would only slow
# kubectl's discovery down or suggest a metrics server that is not there.
_DROPPED_GROUPS = {"metrics.k8s.io", "gateway.networking.k8s.io", "apiregistration.k8s.io"}


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: set[str] = field(default_factory=set)
    crd: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`modelfleets.modelfleet.dev`: how kube names the resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """`ModelFleet.modelfleet.dev`: how kube names the kind in "is invalid" messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @functools.cached_property
    def key(self) -> kmock.resource:
        """The store's key for the type (made once: building a kmock.resource is not cheap)."""
        return kmock.resource(self.group, self.version, self.plural)

    def crd_version(self) -> dict[str, Any]:
        assert self.crd is not None
        found: dict[str, Any] = next(v for v in self.crd["spec"]["versions"] if v["name"] == self.version)
        return found


def default_crd_paths() -> list[pathlib.Path]:
    """The KubeRay CRDs: `$KUBERAY_CRDS` (a directory or os.pathsep-separated files) or ours."""
    env = os.environ.get("KUBERAY_CRDS")
    paths = [pathlib.Path(p) for p in env.split(os.pathsep) if p] if env else [KUBERAY_DIR]
    files: list[pathlib.Path] = []
    for path in paths:
        files += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return files


def load_crds(paths: list[pathlib.Path]) -> list[dict[str, Any]]:
    crds: list[dict[str, Any]] = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            # The C loader: the KubeRay CRDs are 2 MB and dominate the server's start-up time.
            docs = yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            crds += [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    return crds


def builtin_types() -> list[ResourceType]:
    bundled = kmock.ResourcesArray()
    bundled.load_bundled()
    types: list[ResourceType] = []
    for res in bundled:
        info = bundled[res]
        if res.group in _DROPPED_GROUPS or not info.kind or res.plural is None:
            continue
        types.append(
            ResourceType(
                group=res.group or "",
                version=res.version or "v1",
                plural=res.plural,
                kind=info.kind,
                namespaced=bool(info.namespaced),
                singular=info.singular or info.kind.lower(),
                short_names=sorted(info.shortnames),
                categories=sorted(info.categories),
                subresources=set(info.subresources),
            )
        )
    return types


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    spec = crd["spec"]
    names = spec["names"]
    types: list[ResourceType] = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=list(names.get("shortNames", [])),
                categories=list(names.get("categories", [])),
                subresources=set(version.get("subresources", {}) or {}),
                crd=crd,
            )
        )
    return types


class Registry:
    """Served resource types, looked up by (group, version, plural)."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}

    def add(self, rtype: ResourceType) -> None:
        self._types[rtype.group, rtype.version, rtype.plural] = rtype

    def remove_crd(self, crd_name: str) -> list[ResourceType]:
        gone = [t for t in self._types.values() if t.crd and t.crd["metadata"]["name"] == crd_name]
        for rtype in gone:
            del self._types[rtype.group, rtype.version, rtype.plural]
        return gone

    def get(self, group: str | None, version: str | None, plural: str | None) -> ResourceType | None:
        return self._types.get((group or "", version or "", plural or ""))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return next(
            (t for t in self._types.values() if t.api_version == api_version and t.kind == kind), None
        )

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._types.values()))

    def discovery_info(self, rtype: ResourceType) -> kmock.ResourceInfo:
        verbs = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
        return kmock.ResourceInfo(
            namespaced=rtype.namespaced,
            kind=rtype.kind,
            singular=rtype.singular,
            verbs=verbs,
            shortnames=rtype.short_names,
            categories=rtype.categories,
            subresources=rtype.subresources,
        )
