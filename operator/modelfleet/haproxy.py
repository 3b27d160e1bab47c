"""HAProxy as a local head runs it: the config Ray Serve renders, with two edits made before HAProxy reads it.

Ray Serve's high-throughput mode runs HAProxy on a config it renders (ray/serve/_private/haproxy_templates.py)
and takes the binary from RAY_SERVE_HAPROXY_BINARY_PATH. `modelfleet up` points that at a two-line wrapper
running `python -m modelfleet.haproxy`, which edits the file Ray passes with `-f`, then execs the real binary
with Ray's arguments unchanged (Ray finds its HAProxy processes by that command line):

1. Loopback (`--loopback`): Ray's template binds the stats and metrics frontends on every interface
   (`bind *:`, `bind :`) whatever its settings; they move to 127.0.0.1. Binds with a host (http_options.host)
   stay.
2. The fleet's endpoint routes by the body's `model` (`--routes FILE`, written by `modelfleet up` from the
   Serve config: `unified_routing`). A POST to /v1/chat/completions, /v1/completions or /v1/embeddings whose
   JSON names one of those models gets the model's path prefix put in front of its path; from there Ray's own
   rules treat it as a request to the model's prefix: its request router picks a replica and HAProxy streams
   straight to the model's server, with no Python hop. Everything else (other paths, adapters, aliases,
   unknown names, prefix-aware models, a body larger than HAProxy's buffer) goes to the fleet's router as
   before, so the router's answers (404 listing the models, /v1/models, /v1/infer) are unchanged. HAProxy
   waits for a body up to the fleet's limits.bodyTimeoutSeconds, then answers the router's 408; the errors
   a model's server answers in another shape than the router (Serve's plain-text 503 for a full queue) are
   rewritten to the router's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.render.serve_config import MODEL_IMPORT_PATH, ROUTER_APP_NAME, ROUTING

# The router's JSON endpoints a model answers under its own prefix too (transcriptions are multipart forms).
ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
_MODEL_VAR = "txn.modelfleet_model"
_PREFIX_VAR = "txn.modelfleet_prefix"
_RETRY_VAR = "txn.modelfleet_retry_after"


def _error(code: int, message: str, kind: str) -> str:
    """An OpenAI-shaped error body, as the fleet's router sends them (serving_app/errors.py)."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _escaped(text: str) -> str:
    """`text` inside an HAProxy double-quoted argument."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _too_slow(body_timeout_s: float) -> str:
    """The router's 408 (serving_app/limits.py), minus the byte count HAProxy does not report."""
    message = f"The request body did not arrive within {body_timeout_s:g} s (limits.bodyTimeoutSeconds)."
    return _error(408, message, "invalid_request_error")


# The router's answer to a full queue (serving_app/ingress.py), as an HAProxy log-format string.
_OVERLOADED = _escaped(
    _error(
        503,
        f"The model is overloaded (its queue is full), retry in %[var({_RETRY_VAR})]s.",
        "overloaded_error",
    )
)
# Set (only) by HAProxy on the requests it routed by model; a client's own is removed first.
ROUTED_HEADER = "x-modelfleet-endpoint"
_ANY_INTERFACE_BIND = re.compile(r"^(\s*bind )\*?:", re.MULTILINE)


@dataclass(frozen=True)
class UnifiedRouting:
    """What HAProxy needs to route the fleet's endpoint by model (the routes file, as JSON)."""

    # Model name -> its application's route prefix.
    models: dict[str, str] = field(default_factory=dict)
    # The fleet's limits.bodyTimeoutSeconds: how long HAProxy waits for a body to read `model` from. A body
    # still missing then gets the 408 the router would give (OpenAI's shape, naming the limit).
    body_timeout_s: float = 30.0

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> UnifiedRouting:
        found = json.loads(path.read_text(encoding="utf-8"))
        return cls(models=dict(found["models"]), body_timeout_s=float(found["body_timeout_s"]))


def unified_routing(serve_config: Mapping[str, Any]) -> UnifiedRouting:
    """The models HAProxy may route by the body: every model application but prefix-aware ones (the fleet's
    router picks their replica by the prompt). Adapters stay with the router too: it sends them to a replica
    that has them loaded (Serve's multiplexing)."""
    models: dict[str, str] = {}
    body_timeout_s = UnifiedRouting.body_timeout_s
    for app in serve_config.get("applications", []):
        args = app.get("args") or {}
        if app.get("name") == ROUTER_APP_NAME:
            body_timeout_s = float(args["front_door"]["body_timeout_s"])
        if app.get("import_path") == MODEL_IMPORT_PATH and args.get("routing") != ROUTING["prefixAware"]:
            models[str(args["name"])] = str(app["route_prefix"])
    return UnifiedRouting(models=dict(sorted(models.items())), body_timeout_s=body_timeout_s)


def bind_loopback(config: str) -> str:
    """Every bind on all interfaces (`bind *:PORT`, `bind :PORT`) moved to 127.0.0.1."""
    return _ANY_INTERFACE_BIND.sub(r"\g<1>127.0.0.1:", config)


def route_by_model(config: str, routing: UnifiedRouting) -> str:
    """The rules of the module docstring's item 2, placed first in `frontend http_frontend` (before Ray's
    path rules read the path). A model whose prefix has no backend in this config (not deployed yet, or
    removed) gets no rule: its requests stay with the router, which knows what to answer."""
    lines = config.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "frontend http_frontend")
        bind = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("bind "))
    except StopIteration:
        return config  # not Ray's HTTP config (e.g. gRPC only): nothing to route
    served = {name: prefix for name, prefix in routing.models.items() if f" path_beg {prefix}/\n" in config}
    if not served:
        return config
    asked = "METH_POST modelfleet_by_model"
    routed = f"{{ var({_PREFIX_VAR}) -m found }}"
    rules = [
        "    # ModelFleet: a request to the fleet's endpoint naming a model goes to the model's prefix",
        f"    http-request del-header {ROUTED_HEADER}",
        f"    acl modelfleet_by_model path {' '.join(ROUTED_PATHS)}",
        # HAProxy's own 408 (a body not in within the limit), in the router's words and shape.
        "    http-error status 408 content-type application/json hdr Connection close "
        f'string "{_escaped(_too_slow(routing.body_timeout_s))}"',
        f"    http-request wait-for-body time {round(routing.body_timeout_s * 1000)}ms if {asked}",
        f"    http-request set-var({_MODEL_VAR}) req.body,json_query('$.model') if {asked}",
    ]
    for model, prefix in served.items():
        named = f"{{ var({_MODEL_VAR}) -m str {model} }}"
        rules.append(f"    http-request set-var({_PREFIX_VAR}) str({prefix}) if {asked} {named}")
    rules += [
        f"    http-request set-path %[var({_PREFIX_VAR})]%[path] if {routed}",
        # The model's server counts it as a request to the fleet's endpoint (serving_app/metrics.py).
        f"    http-request set-header {ROUTED_HEADER} unified if {routed}",
        # Serve's replica refuses a request over its model's queue with a plain-text 503 (Retry-After set);
        # on the fleet's endpoint that stays the OpenAI-shaped error the router gave (serving_app/ingress.py).
        f"    http-response set-var({_RETRY_VAR}) res.hdr(retry-after) if {routed} {{ status 503 }} "
        "{ res.hdr(content-type) -m beg text/plain }",
        "    http-response return status 503 content-type application/json "
        f'hdr Retry-After "%[var({_RETRY_VAR})]" lf-string "{_OVERLOADED}" '
        f"if {{ var({_RETRY_VAR}) -m found }}",
    ]
    return "".join([*lines[: bind + 1], *(rule + "\n" for rule in rules), *lines[bind + 1 :]])


def config_path(haproxy_args: Sequence[str]) -> Path | None:
    """The config file in HAProxy's arguments (after `-f`)."""
    for flag, value in itertools.pairwise(haproxy_args):
        if flag == "-f":
            return Path(value)
    return None


def edit_config(path: Path, *, loopback: bool, routing: UnifiedRouting | None) -> None:
    text = path.read_text(encoding="utf-8")
    edited = bind_loopback(text) if loopback else text
    edited = route_by_model(edited, routing) if routing else edited
    if edited != text:
        path.write_text(edited, encoding="utf-8")


def wrapper_script(python: str, real: str, *, loopback: bool, routes_file: Path | None) -> str:
    """The executable RAY_SERVE_HAPROXY_BINARY_PATH names: this module, then the real HAProxy."""
    command = [python, "-m", "modelfleet.haproxy", "--real", real]
    command += ["--loopback"] if loopback else []
    command += ["--routes", str(routes_file)] if routes_file else []
    header = "#!/bin/sh\n# Written by modelfleet up (modelfleet/haproxy.py).\n"
    return f'{header}exec {shlex.join([*command, "--"])} "$@"\n'


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelfleet.haproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--real", required=True, help="the HAProxy binary to run")
    parser.add_argument("--loopback", action="store_true", help="move binds on every interface to 127.0.0.1")
    parser.add_argument(
        "--routes", type=Path, help="the fleet's UnifiedRouting as JSON (absent: the router routes)"
    )
    parser.add_argument("haproxy_args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    haproxy_args = options.haproxy_args
    if haproxy_args[:1] == ["--"]:
        haproxy_args = haproxy_args[1:]
    config = config_path(haproxy_args)
    routing = UnifiedRouting.load(options.routes) if options.routes and options.routes.is_file() else None
    if config is not None:
        edit_config(config, loopback=options.loopback, routing=routing)
    os.execv(options.real, [options.real, *haproxy_args])


if __name__ == "__main__":
    main()
