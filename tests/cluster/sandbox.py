"""The container sandbox of the test cluster's pod runner: `python -I -S sandbox.py SPEC.json`.

Started by the pod runner for each container, inside the private network namespace of the test world
(scripts/private-net.sh: a user namespace in which this process holds CAP_SYS_ADMIN). It gives the
container what a kubelet and its runtime give one, then execs the container's command:
- a mount namespace of its own, in which each of the pod's volumes appears at its `mountPath` (bind mounts
  of the folders the runner wrote them to), `/etc/resolv.conf` names the cluster's DNS, and `/etc/hosts`
  and `/etc/hostname` name the pod;
- a UTS namespace whose hostname is the pod's;
- with `readOnlyRootFilesystem`, every file system the container sees read-only except its volumes.

The root file system stays this machine's (there are no images here: tests/cluster/images.py says what an
image stands for). A mount path whose parent folders do not exist here is made inside a copy of its nearest
existing ancestor: a tmpfs mounted over it that holds bind mounts of everything the ancestor held, so the
machine's own folders are never written to. Standard library only: it runs before the container's
environment exists, and must be single-threaded for `unshare`.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS, CLONE_NEWUTS = 0x00020000, 0x04000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
# statvfs flags that a remount of a mount this namespace inherited must repeat (the kernel locks them).
LOCKED_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
# Kernel file systems a read-only root leaves alone, as a container runtime mounts them apart.
KERNEL_MOUNTS = ("/proc", "/sys", "/dev")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def _remount_read_only(point: str) -> None:
    flags = os.statvfs(point).f_flag
    locked = sum(ms for st, ms in LOCKED_FLAGS.items() if flags & st)
    mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | locked)


class Sandbox:
    def __init__(self, spec: dict[str, object]) -> None:
        self.spec = spec
        self.scratch = str(spec["scratch"])
        self.shadowed: set[str] = set()  # folders with a tmpfs over them, and folders made in one

    def _ancestor(self, path: str) -> str:
        while not os.path.lexists(path):
            path = os.path.dirname(path)
        return path

    def _shadow(self, folder: str) -> None:
        """Make `folder` writable in this namespace only: a tmpfs over it holding its entries again (a
        folder made inside one is already)."""
        if folder in self.shadowed:
            return
        if folder == "/":
            raise OSError(f"cannot make a mount path at the root of this machine's file system ({folder})")
        staging = os.path.join(self.scratch, "shadow", folder.strip("/").replace("/", "_"))
        os.makedirs(staging, exist_ok=True)
        mount(folder, staging, None, MS_BIND | MS_REC)
        # Held open: the staging folder may sit inside `folder` itself (a mount path under /tmp).
        held = os.open(staging, os.O_PATH)
        mode = os.stat(folder).st_mode & 0o7777
        mount("tmpfs", folder, "tmpfs", 0, f"mode={mode:o}")
        base = f"/proc/self/fd/{held}"
        for entry in os.listdir(base):
            original, copy = os.path.join(base, entry), os.path.join(folder, entry)
            if os.path.islink(original):
                os.symlink(os.readlink(original), copy)
                continue
            if os.path.isdir(original):
                os.mkdir(copy)
            else:
                open(copy, "w").close()
            mount(original, copy, None, MS_BIND | MS_REC)
        os.close(held)
        self.shadowed.add(folder)

    def _make(self, path: str, *, directory: bool) -> str:
        """`path` made to exist (as a folder or a file) without writing to this machine's folders: what is
        missing is made in a shadow of its nearest existing ancestor."""
        path = os.path.realpath(path)
        if os.path.exists(path):
            return path
        self._shadow(self._ancestor(path))
        parent = os.path.dirname(path)
        while parent not in self.shadowed:  # what is made here lives in the tmpfs too
            self.shadowed.add(parent)
            parent = os.path.dirname(parent)
        if directory:
            os.makedirs(path, exist_ok=True)
            self.shadowed.add(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        return path

    def _read_only_root(self, keep: set[str]) -> None:
        """Every mount this container sees read-only, but the kernel's and the writable volumes (`keep`)."""
        with open("/proc/self/mountinfo") as table:
            points = [line.split()[4] for line in table]
        spared = (*KERNEL_MOUNTS, *keep)
        for point in points:
            if any(point == k or point.startswith(k + "/") for k in spared) or not os.path.isdir(point):
                continue
            try:
                _remount_read_only(point)
            except OSError:
                if point == "/":
                    raise

    def enter(self) -> None:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        if self.spec.get("hostname"):  # a pod's; the dev shell keeps the machine's
            hostname = str(self.spec["hostname"]).encode()
            _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
        mounts = list(self.spec.get("mounts") or [])  # type: ignore[call-overload]
        files = dict(self.spec.get("files") or {})  # type: ignore[call-overload]
        # Every target first (shadows are made while the file system is still writable).
        targets = [self._make(m["target"], directory=os.path.isdir(m["source"])) for m in mounts]
        file_mounts = {}
        for path, text in files.items():
            source = os.path.join(self.scratch, "files", path.strip("/").replace("/", "_"))
            os.makedirs(os.path.dirname(source), exist_ok=True)
            with open(source, "w") as out:
                out.write(text)
            file_mounts[source] = self._make(path, directory=False)
        # Sources held open before anything is mounted: a volume mounted over /tmp must not hide the folders
        # the next mounts come from. Parents before children.
        held = {
            source: os.open(source, os.O_PATH) for source in [*file_mounts, *(m["source"] for m in mounts)]
        }
        for source, path in file_mounts.items():
            mount(f"/proc/self/fd/{held[source]}", path, None, MS_BIND)
        for spec, target in sorted(zip(mounts, targets, strict=True), key=lambda pair: pair[1].count("/")):
            mount(f"/proc/self/fd/{held[spec['source']]}", target, None, MS_BIND | MS_REC)
        for fd in held.values():
            os.close(fd)
        writable = {t for spec, t in zip(mounts, targets, strict=True) if not spec.get("readonly")}
        if self.spec.get("read_only_root"):
            self._read_only_root(keep=writable)
        for target in set(targets) - writable:
            _remount_read_only(target)
        workdir = str(self.spec.get("workdir") or "/")
        os.chdir(workdir if os.path.isdir(workdir) else "/")


def main() -> None:
    with open(sys.argv[1]) as source:
        spec = json.load(source)
    try:
        Sandbox(spec).enter()
    except OSError as error:
        print(f"sandbox: {error}", file=sys.stderr, flush=True)
        sys.exit(128)
    argv = [str(part) for part in spec["argv"]]
    try:
        os.execvp(argv[0], argv)  # the environment is the container's, already set by the runner
    except OSError as error:
        print(f"sandbox: exec {argv[0]}: {error}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
