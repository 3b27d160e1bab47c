"""A pod's volumes as folders on this machine, written as a kubelet's volume manager writes them; the
sandbox (sandbox.py) mounts each at its `mountPath` in the container.

Modelled: `emptyDir` (on the machine's /dev/shm for `medium: Memory`), `secret`, `configMap`,
`downwardAPI`, `hostPath`, and `projected` volumes of those sources plus `serviceAccountToken` (a token of
the pod's ServiceAccount from the TokenRequest API, bound to the pod, renewed at 80 % of its lifetime, as a
kubelet does): the volume the API server's ServiceAccount admission adds to every pod that automounts its
token, so in-cluster clients find `token`, `ca.crt` and `namespace` under
/var/run/secrets/kubernetes.io/serviceaccount. Files are replaced whole (a reader never sees one half
written) and refreshed whenever `sync` runs (the pod runner calls it every probe period; a kubelet does about
once a minute). Anything else (a PersistentVolumeClaim, a CSI volume) is not modelled, and a pod that needs
one fails to start with a message that says so.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

TOKEN_LIFETIME_S = 3607  # what the ServiceAccount admission plugin asks for


class VolumeError(RuntimeError):
    """A volume cannot be made (yet): a missing Secret or ConfigMap, or a kind this runner does not model."""


def field_value(pod: Any, path: str, ip: str, node: str, node_ip: str) -> str:
    """A downward-API fieldRef of the pod."""
    meta = pod.metadata
    mapping = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if mapping:
        source = meta.labels if mapping.group(1) == "labels" else meta.annotations
        return str((source or {}).get(mapping.group(2), ""))
    return str(
        {
            "metadata.name": meta.name,
            "metadata.namespace": meta.namespace,
            "metadata.uid": meta.uid,
            "spec.nodeName": node,
            "spec.serviceAccountName": pod.spec.service_account_name or "default",
            "status.hostIP": node_ip,
            "status.podIP": ip,
            "status.podIPs": ip,
        }.get(path, "")
    )


def write_atomically(path: Path, value: str | bytes, mode: int | None = None) -> None:
    """A volume's file replaced whole, as a kubelet's atomic writer does (unchanged files are left alone)."""
    data = value.encode() if isinstance(value, str) else value
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_bytes(data)
    if mode is not None:
        staged.chmod(mode)
    os.replace(staged, path)


class PodVolumes:
    """The volumes of one pod under `root/volumes/<name>` (memory-backed ones under `memory_root`)."""

    def __init__(
        self, core: Any, pod: Any, root: Path, memory_root: Path, *, ip: str, node: str, node_ip: str
    ) -> None:
        self.core, self.pod, self.ip, self.node, self.node_ip = core, pod, ip, node, node_ip
        self.root: Path = root / "volumes"
        self.memory_root: Path = memory_root
        self.paths: dict[str, Path] = {}
        self._tokens: dict[str, tuple[float, str]] = {}  # volume/path -> (fetched at, token)

    @property
    def namespace(self) -> str:
        return str(self.pod.metadata.namespace)

    def sync(self) -> None:
        """Make or refresh every volume of the pod; VolumeError when one cannot be made."""
        for volume in self.pod.spec.volumes or []:
            self.paths[volume.name] = self._volume(volume)

    def mounts(self, container: Any) -> list[dict[str, Any]]:
        """The sandbox's mounts for a container: {source, target, readonly}."""
        out = []
        for mount in container.volume_mounts or []:
            source = self.paths.get(mount.name)
            if source is None:
                raise VolumeError(
                    f"container {container.name} mounts {mount.name}, which the pod does not have"
                )
            if mount.sub_path:
                source = source / mount.sub_path
                if not source.exists():
                    source.mkdir(parents=True)
            out.append({"source": str(source), "target": mount.mount_path, "readonly": bool(mount.read_only)})
        return out

    # --- kinds ---------------------------------------------------------------------------------------------

    def _volume(self, volume: Any) -> Path:
        if volume.empty_dir is not None:
            memory = (volume.empty_dir.medium or "") == "Memory"
            path = (self.memory_root if memory else self.root) / str(volume.name)
            path.mkdir(parents=True, exist_ok=True)
            return path
        if volume.host_path is not None:
            return Path(volume.host_path.path)
        path = self.root / str(volume.name)
        files: dict[str, tuple[bytes, int | None]] = {}
        if volume.secret is not None:
            files = self._secret_files(volume.secret.secret_name, volume.secret, volume.secret.default_mode)
        elif volume.config_map is not None:
            files = self._config_map_files(volume.config_map, volume.config_map.default_mode)
        elif volume.downward_api is not None:
            files = self._downward_files(volume.downward_api.items, volume.downward_api.default_mode)
        elif volume.projected is not None:
            mode = volume.projected.default_mode
            for source in volume.projected.sources or []:
                if source.secret is not None:
                    files.update(self._secret_files(source.secret.name, source.secret, mode))
                elif source.config_map is not None:
                    files.update(self._config_map_files(source.config_map, mode))
                elif source.downward_api is not None:
                    files.update(self._downward_files(source.downward_api.items, mode))
                elif source.service_account_token is not None:
                    token = source.service_account_token
                    files[token.path] = (self._token(volume.name, token).encode(), mode)
                else:
                    raise VolumeError(
                        f"volume {volume.name}: a projected source the pod runner does not model"
                    )
        else:
            kind = next((k for k, v in volume.to_dict().items() if k != "name" and v is not None), "?")
            raise VolumeError(f"volume {volume.name}: {kind} volumes are not modelled by the test cluster")
        for relative, (data, file_mode) in files.items():
            write_atomically(path / relative, data, file_mode)
        _remove_others(path, set(files))
        return path

    def _secret_files(self, name: str, source: Any, mode: int | None) -> dict[str, tuple[bytes, int | None]]:
        found = self._read("secret", name, bool(source.optional))
        data = {key: base64.b64decode(value) for key, value in (found or {}).items()}
        return self._items(data, source.items, mode, f"Secret {name}", bool(source.optional))

    def _config_map_files(self, source: Any, mode: int | None) -> dict[str, tuple[bytes, int | None]]:
        found = self._read("config_map", source.name, bool(source.optional))
        data = {key: value.encode() for key, value in (found or {}).items()}
        return self._items(data, source.items, mode, f"ConfigMap {source.name}", bool(source.optional))

    @staticmethod
    def _items(
        data: dict[str, bytes], items: Any, mode: int | None, what: str, optional: bool
    ) -> dict[str, tuple[bytes, int | None]]:
        if not items:
            return {key: (value, mode) for key, value in data.items()}
        out: dict[str, tuple[bytes, int | None]] = {}
        for item in items:
            if item.key in data:
                out[item.path] = (data[item.key], item.mode if item.mode is not None else mode)
            elif not optional:
                raise VolumeError(f"{what} has no key {item.key}")
        return out

    def _downward_files(self, items: Any, mode: int | None) -> dict[str, tuple[bytes, int | None]]:
        out: dict[str, tuple[bytes, int | None]] = {}
        for item in items or []:
            if item.field_ref is not None:
                value = field_value(self.pod, item.field_ref.field_path, self.ip, self.node, self.node_ip)
                out[item.path] = (value.encode(), item.mode if item.mode is not None else mode)
        return out

    def _read(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        try:
            found = getattr(self.core, f"read_namespaced_{kind}")(name, self.namespace)
        except Exception as error:
            if getattr(error, "status", None) == 404 and optional:
                return None
            raise VolumeError(f"{kind.replace('_', '')} {self.namespace}/{name}: {error}") from error
        return dict(found.data or {})

    def _token(self, volume: str, source: Any) -> str:
        from kubernetes.client import AuthenticationV1TokenRequest, V1BoundObjectReference, V1TokenRequestSpec

        lifetime = source.expiration_seconds or TOKEN_LIFETIME_S
        key = f"{volume}/{source.path}"
        fetched = self._tokens.get(key)
        if fetched is not None and time.monotonic() - fetched[0] < 0.8 * lifetime:
            return fetched[1]
        pod = self.pod.metadata
        request = AuthenticationV1TokenRequest(
            spec=V1TokenRequestSpec(
                audiences=[source.audience] if source.audience else [],
                expiration_seconds=lifetime,
                bound_object_ref=V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.name, uid=pod.uid
                ),
            )
        )
        account = self.pod.spec.service_account_name or "default"
        try:
            answer = self.core.create_namespaced_service_account_token(account, self.namespace, request)
        except Exception as error:
            raise VolumeError(f"a token of ServiceAccount {self.namespace}/{account}: {error}") from error
        self._tokens[key] = (time.monotonic(), str(answer.status.token))
        return self._tokens[key][1]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.memory_root, ignore_errors=True)


def _remove_others(folder: Path, keep: set[str]) -> None:
    """Files of the volume that its source no longer has (a key removed from a Secret): gone, as a kubelet
    removes them."""
    if not folder.exists():
        folder.mkdir(parents=True)
        return
    for path in folder.rglob("*"):
        if (
            path.is_file()
            and path.relative_to(folder).as_posix() not in keep
            and not path.name.startswith(".")
        ):
            path.unlink()
