"""The pod network of the test cluster: an address per pod on this machine, and the shim that makes it
the pod's whole network (podnet.c).

Pod IPs come from POD_CIDR. Kubernetes refuses loopback addresses in EndpointSlices (and the API server
will not proxy to them), so pods cannot live on 127.0.0.x; instead the whole CIDR is routed to the
loopback interface (`ip route add local 10.244.0.0/24 dev lo`: every address in it is this host's, no
per-pod setup). That needs CAP_NET_ADMIN in the current network namespace, which a private one gives
(`scripts/private-net.sh`, `unshare -rn`): nothing outside it can reach the pods, and the host's own
routing is never touched.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from pathlib import Path

from tests.cluster import binaries

POD_CIDR = ipaddress.ip_network("10.244.0.0/24")
# The node's own address on the pod network: where the pods reach the API server and the cluster's DNS.
NODE_IP = str(next(POD_CIDR.hosts()))
SOURCE = Path(__file__).with_name("podnet.c")


class PodNetworkUnavailable(RuntimeError):
    """The pod network cannot be made here (no private network namespace, no `ip`, no compiler)."""


def shim() -> Path:
    """podnet.so built from podnet.c with the machine's C compiler, cached by the source's hash."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = binaries.cache_dir() / "lib" / f"podnet-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial), str(SOURCE), "-ldl"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError as error:
        raise PodNetworkUnavailable("the pod network shim needs a C compiler (cc)") from error
    except subprocess.CalledProcessError as error:
        raise PodNetworkUnavailable(f"building {SOURCE.name} failed:\n{error.stderr}") from error
    partial.rename(target)
    return target


def _routed() -> bool:
    try:
        shown = subprocess.run(
            ["ip", "route", "show", "table", "local", str(POD_CIDR)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError as error:
        raise PodNetworkUnavailable("the pod network needs iproute2 (`ip`)") from error
    return str(POD_CIDR) in shown.stdout


def ensure_routes() -> None:
    """Make every address of POD_CIDR local to this network namespace (once; idempotent). Only in a
    private namespace (loopback its only interface): never change a real machine's routing."""
    from modelfleet.local import network_is_private

    if not network_is_private():
        raise PodNetworkUnavailable(
            f"the pod network ({POD_CIDR}) is made only in a private network namespace: run under "
            "scripts/private-net.sh (as `make test`, `make e2e` and `make dev-cluster` do)"
        )
    if _routed():
        return
    added = subprocess.run(
        ["ip", "route", "add", "local", str(POD_CIDR), "dev", "lo"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if added.returncode != 0:
        raise PodNetworkUnavailable(
            f"cannot route {POD_CIDR} to loopback here ({added.stderr.strip()}): run inside a private "
            "network namespace, e.g. `scripts/private-net.sh make e2e` (what `make test` does)"
        )


def _address(verb: str, ip: str) -> None:
    done = subprocess.run(
        ["ip", "address", verb, f"{ip}/32", "dev", "lo"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0 and "File exists" not in done.stderr and "Cannot assign" not in done.stderr:
        raise PodNetworkUnavailable(f"ip address {verb} {ip}: {done.stderr.strip()}")


class Addresses:
    """Pod IPs handed out from POD_CIDR and taken back when a pod is gone. Each is also an address of the
    loopback interface while its pod lives, as a CNI gives a pod's address to its interface: software that
    looks its address up among the interfaces (vLLM's gloo does) finds it."""

    def __init__(self) -> None:
        self._free = [str(ip) for ip in list(POD_CIDR.hosts())[1:]]  # .1 is the node's (NODE_IP)
        self._used: set[str] = set()

    def take(self) -> str:
        if not self._free:
            raise RuntimeError(f"no pod address left in {POD_CIDR}")
        ip = self._free.pop(0)
        _address("add", ip)
        self._used.add(ip)
        return ip

    def give_back(self, ip: str) -> None:
        if ip in self._used:
            self._used.discard(ip)
            _address("del", ip)
            self._free.append(ip)  # to the end: a restarted pod gets a new address, as on a node
