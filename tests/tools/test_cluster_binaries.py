"""Where the control plane's binaries come from: pinned versions read from our go.mod files, cache names
that change with what goes into a build, and envtest's KUBEBUILDER_ASSETS taking precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cluster import binaries


def test_versions_are_the_pins_in_go_mod() -> None:
    versions = {name: b.version for name, b in binaries.BINARIES.items()}
    assert versions["kube-apiserver"] == versions["kube-controller-manager"]
    assert versions["kube-apiserver"].startswith(("v1.36.", "v1.37."))
    assert versions["etcd"].startswith("v3.")
    assert versions["kuberay-operator"].startswith("v1.")
    # /version of the API server reports the release it was built from.
    assert f"gitVersion={versions['kube-apiserver']}" in binaries.BINARIES["kube-apiserver"].ldflags()


def test_the_cache_name_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_CACHE_DIR", str(tmp_path))
    etcd = binaries.BINARIES["etcd"]
    path = binaries.cached_path(etcd)
    assert path.parent == tmp_path / "bin" and path.name.startswith(f"etcd-{etcd.version}-")
    assert binaries.cached_path(etcd) == path, "the same sources give the same name"
    other = binaries.Binary("etcd", "etcd", "./other", etcd.upstream)
    assert binaries.cached_path(other) != path, "a different build gets a different name"


def test_envtest_assets_are_used_instead_of_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("etcd", "kube-apiserver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        os.chmod(tmp_path / name, 0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert binaries.ensure("etcd", log=False) == tmp_path / "etcd"
    assert binaries.ensure("kube-apiserver", log=False) == tmp_path / "kube-apiserver"
    assert binaries.envtest_binary("kube-controller-manager") is None, "envtest ships no controller manager"
