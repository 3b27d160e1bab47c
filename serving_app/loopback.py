"""A local fleet's listeners all on 127.0.0.1 (`modelfleet up` on a laptop).

Ray 2.60 binds two kinds of listener on every interface, with no setting to change it: each Serve replica's
inter-deployment gRPC server (`add_port_to_grpc_server(self._server, "[::]:0")` in
ray/serve/_private/replica.py, on both data paths) and, in high-throughput mode, HAProxy's stats and metrics
frontends (`bind *:` / `bind :` in its config template). In a Kubernetes pod that is how other pods reach
them; on a laptop it opens ports to the network. When `modelfleet up` starts Ray it sets
MODELFLEET_LOOPBACK_ONLY=1 (modelfleet/localray.py). Here, imported by every replica of the fleet before
Serve starts that gRPC server, the replica's bind address becomes 127.0.0.1 (the local node's address, where
callers dial it); HAProxy runs through a wrapper that rewrites its two binds (localray.py).
tests/unit/test_ray_private_api.py pins both Ray internals; tests/serving reads every listening socket.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from modelfleet_contract.wire import LOOPBACK_ENV

_ALL_INTERFACES = "[::]:"
_HOOK = "add_port_to_grpc_server"  # the name replica.py calls


def keep_replica_grpc_on_loopback() -> None:
    """Where LOOPBACK_ENV is set, replicas bind their inter-deployment gRPC server to 127.0.0.1."""
    # Only in a Ray process (a replica imports serving_app with Ray loaded): the HAProxy wrapper imports this
    # package too, and must not load Ray each time HAProxy (re)starts.
    if os.environ.get(LOOPBACK_ENV) != "1" or "ray" not in sys.modules:
        return
    from serving_app.ray_compat import replica_module

    replica: Any = replica_module()

    original: Callable[[Any, str], int] = getattr(replica, _HOOK)
    if getattr(original, "modelfleet_loopback", False):
        return

    def add_port_on_loopback(server: Any, address: str) -> int:
        if address.startswith(_ALL_INTERFACES):
            address = "127.0.0.1:" + address[len(_ALL_INTERFACES) :]
        return original(server, address)

    add_port_on_loopback.modelfleet_loopback = True  # type: ignore[attr-defined]
    setattr(replica, _HOOK, add_port_on_loopback)
