"""The control plane's binaries, built from source through the Go module proxy and cached by version.

Each binary comes from a pinned Go module under `go/` (go.mod + go.sum; a tiny `main.go` calling the
upstream command where one is needed). A build lands in the user's cache
(`$MODELFLEET_CACHE_DIR`, else `$XDG_CACHE_HOME/modelfleet`, else `~/.cache/modelfleet`) under a name that
carries the version and a hash of everything that went into it, so a second run finds it at once and a
change of pin builds anew. `$KUBEBUILDER_ASSETS` (controller-runtime envtest's convention) may point at
prebuilt `etcd` and `kube-apiserver`; those are used instead of building.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GO_DIR = Path(__file__).parent / "go"
ENVTEST_ASSETS = ("etcd", "kube-apiserver")


@dataclass(frozen=True)
class Binary:
    """One binary of the control plane and where its source is pinned."""

    name: str  # the file name its users know
    module: str  # folder under go/ holding the go.mod that pins it
    package: str  # what `go build` builds, relative to that folder or a module path
    upstream: str  # the module whose version names the build

    @property
    def module_dir(self) -> Path:
        return GO_DIR / self.module

    @property
    def version(self) -> str:
        """The pinned version of the upstream module, read from go.mod."""
        gomod = (self.module_dir / "go.mod").read_text(encoding="utf-8")
        found = re.search(rf"^\s*(?:require\s+)?{re.escape(self.upstream)} (v\S+)", gomod, re.M)
        if found is None:
            raise RuntimeError(f"{self.module_dir / 'go.mod'} does not require {self.upstream}")
        return found.group(1)

    def ldflags(self) -> str:
        flags = ["-s", "-w"]  # no symbol tables: a faster link and a third of the size
        if self.upstream == "k8s.io/kubernetes":
            # Without these /version says v0.0.0 and the API server's compatibility version goes wrong.
            major, minor = self.version.lstrip("v").split(".")[:2]
            prefix = "k8s.io/component-base/version"
            flags += [
                f"-X {prefix}.gitVersion={self.version}",
                f"-X {prefix}.gitMajor={major}",
                f"-X {prefix}.gitMinor={minor}",
                f"-X {prefix}.gitTreeState=clean",
            ]
        if self.upstream == "helm.sh/helm/v3":
            # As Helm's Makefile does: its version, and the Kubernetes version `helm template` and `helm lint`
            # assume without a cluster (the client-go minor it is built with; else v1.20).
            gomod = (self.module_dir / "go.mod").read_text(encoding="utf-8")
            client_go = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", gomod, re.M)
            if client_go is None:
                raise RuntimeError(f"{self.module_dir / 'go.mod'} does not require k8s.io/client-go")
            flags.append(f"-X helm.sh/helm/v3/internal/version.version={self.version}")
            for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
                flags += [
                    f"-X {package}.k8sVersionMajor=1",
                    f"-X {package}.k8sVersionMinor={client_go.group(1)}",
                ]
        return " ".join(flags)


BINARIES = {
    b.name: b
    for b in (
        Binary("etcd", "etcd", ".", "go.etcd.io/etcd/server/v3"),
        Binary("kube-apiserver", "kubernetes", "./kube-apiserver", "k8s.io/kubernetes"),
        Binary("kube-controller-manager", "kubernetes", "./kube-controller-manager", "k8s.io/kubernetes"),
        # Not a control-plane part: Argo CD's Lua interpreter, to run our health checks as Argo CD does.
        Binary("argocd-lua", "argocd-lua", ".", "github.com/yuin/gopher-lua"),
        # Not a control-plane part either: the Helm CLI, to lint, template and install our chart.
        Binary("helm", "helm", "helm.sh/helm/v3/cmd/helm", "helm.sh/helm/v3"),
        Binary(
            "kuberay-operator",
            "kuberay",
            "github.com/ray-project/kuberay/ray-operator",
            "github.com/ray-project/kuberay/ray-operator",
        ),
    )
}


def cache_dir() -> Path:
    explicit = os.environ.get("MODELFLEET_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelfleet"


def _go(*args: str, cwd: Path, capture: bool = True) -> str:
    try:
        result = subprocess.run(
            ["go", *args], cwd=cwd, capture_output=capture, text=True, check=False, timeout=3600
        )
    except FileNotFoundError as error:
        raise RuntimeError(
            "the control plane is built with Go (1.26 or newer): `go` is not on PATH"
        ) from error
    if result.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} (in {cwd}) failed:\n{result.stderr}")
    return result.stdout


def _build_key(binary: Binary) -> str:
    """A hash of what the build depends on: the pins, our mains, the flags and the Go toolchain."""
    digest = hashlib.sha256()
    for path in sorted(binary.module_dir.rglob("*")):
        if path.is_file() and path.suffix in (".go", ".mod", ".sum"):
            digest.update(path.relative_to(binary.module_dir).as_posix().encode())
            digest.update(path.read_bytes())
    digest.update(binary.package.encode())
    digest.update(binary.ldflags().encode())
    digest.update(_go("env", "GOVERSION", "GOOS", "GOARCH", cwd=binary.module_dir).encode())
    return digest.hexdigest()[:12]


def envtest_binary(name: str) -> Path | None:
    """`$KUBEBUILDER_ASSETS/<name>` when envtest's assets are there and hold that binary."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets or name not in ENVTEST_ASSETS:
        return None
    candidate = Path(assets) / name
    return candidate if os.access(candidate, os.X_OK) else None


def cached_path(binary: Binary) -> Path:
    return cache_dir() / "bin" / f"{binary.name}-{binary.version}-{_build_key(binary)}"


def ensure(name: str, *, log: bool = True) -> Path:
    """The path of binary `name`, built first when no build of this exact source is cached."""
    found = envtest_binary(name)
    if found is not None:
        return found
    binary = BINARIES[name]
    target = cached_path(binary)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (a test run and `make dev-cluster` may start together); the loser finds it built.
    with (target.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        started = time.monotonic()
        if log:
            print(f"[cluster] building {name} {binary.version} from the Go module proxy ...", file=sys.stderr)
        partial = target.with_name(target.name + ".partial")
        _go(
            "build",
            "-trimpath",
            "-ldflags",
            binary.ldflags(),
            "-o",
            str(partial),
            binary.package,
            cwd=binary.module_dir,
        )
        partial.rename(target)
        if log:
            took = time.monotonic() - started
            print(f"[cluster] built {name} {binary.version} in {took:.1f}s -> {target}", file=sys.stderr)
    return target


def ensure_all(names: Iterable[str] = BINARIES) -> dict[str, Path]:
    return {name: ensure(name) for name in names}


def module_dir(module_path: str, *, pinned_in: str) -> Path:
    """Where the Go module cache holds `module_path` at the version go/<pinned_in>/go.mod pins
    (downloaded first if needed): how KubeRay's CRDs are found."""
    out = _go("mod", "download", "-json", module_path, cwd=GO_DIR / pinned_in)
    info = json.loads(out)
    if info.get("Error"):
        raise RuntimeError(f"go mod download {module_path}: {info['Error']}")
    return Path(info["Dir"])
