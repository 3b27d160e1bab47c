"""The local backend behind `modelfleet up | status | down`: a fleet file on a local Ray, no Kubernetes.

`up` renders the fleet with the same renderer the operator uses and PUTs the very serveConfigV2 to a local
Ray dashboard, exactly as KubeRay does; `status` computes the fleet's status with the operator's pure
status function from Serve's REST details. State (ports, temp root, fleet) lives in `.modelfleet/`.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from modelfleet import yamlio
from modelfleet.api.v1alpha1 import ModelFleet, ModelFleetStatus
from modelfleet.api.validation import validate_fleet
from modelfleet.localray import RayHead, start_head, stop_head, wait_for, write_unified_routes
from modelfleet.render.cluster import HIGH_THROUGHPUT_ENV
from modelfleet.render.serve_config import serve_config
from modelfleet.status import fleet_status
from modelfleet_contract.wire import API_KEYS_DIR_ENV

STATE_DIR = Path(os.environ.get("MODELFLEET_HOME", ".modelfleet"))
SETTLED = {"Ready", "ScaledToZero", "Failed"}


class LocalError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass
class LocalFleet:
    """A fleet running on a local Ray head."""

    document: dict[str, Any]
    head: RayHead

    @property
    def name(self) -> str:
        return str(self.document["metadata"]["name"])

    def status(self) -> ModelFleetStatus:
        # An empty RayService stands for "deployed": models then read straight off Serve's details.
        return fleet_status(self.document, {}, self.head.details())


def state_file(name: str) -> Path:
    return STATE_DIR / f"{name}.json"


def load_fleet(path: str, *, cpu: bool) -> dict[str, Any]:
    """The one ModelFleet of a file, checked with all three layers, local paths made absolute."""
    documents = [d for d in yamlio.load_file(path) if d.get("kind") == "ModelFleet"]
    if len(documents) != 1:
        raise LocalError(f"{path}: expected exactly one ModelFleet, found {len(documents)}")
    document = copy.deepcopy(documents[0])
    for model in document.get("spec", {}).get("models", []):
        if cpu:
            model["accelerator"], model["gpus"] = "cpu", 0
        source = Path(str(model.get("source", "")))
        if source.exists():  # a checkpoint folder: replicas run elsewhere, so make it absolute
            model["source"] = str(source.resolve())
    if cpu and not any(w.get("gpusPerWorker") == 0 for w in document["spec"].get("workers", [])):
        # Locally every model shares the one node; a CPU group keeps the cluster-side checks meaningful.
        document["spec"].setdefault("workers", []).append({"name": "local-cpu", "gpusPerWorker": 0})
    fleet, problems = validate_fleet(copy.deepcopy(document))
    if fleet is None:
        raise LocalError("\n".join(f"{path}: {p}" for p in problems))
    return document


def local_serve_config(fleet: ModelFleet, serve_port: int) -> dict[str, Any]:
    """The rendered Serve config, with HTTP bound to loopback on the chosen port."""
    config = serve_config(fleet.spec)
    config["http_options"] = {"host": "127.0.0.1", "port": serve_port}
    config["proxy_location"] = "HeadOnly"
    return config


def network_is_private() -> bool:
    """True in a network namespace whose only interface is loopback (e.g. `unshare -rn`): a port opened on
    "all interfaces" there is still reachable from this machine only."""
    try:
        lines = Path("/proc/net/dev").read_text(encoding="utf-8").splitlines()[2:]
    except OSError:
        return False
    return {line.split(":", 1)[0].strip() for line in lines} <= {"lo"}


# For a fleet with one API key, `up` also takes the key from this variable (a shorthand for --secrets-dir).
API_KEY_ENV = "MODELFLEET_API_KEY"


def secrets_file(name: str) -> Path:
    """Where `up` keeps the key given by MODELFLEET_API_KEY, laid out like --secrets-dir."""
    return STATE_DIR / f"{name}.secrets"


def keys_dir(fleet: ModelFleet, secrets_dir: str | None) -> Path | None:
    """The folder holding the fleet's API keys as `<secretName>/<key>` files (the layout Kubernetes mounts
    them in), or None for a fleet without keys. The serving app re-reads the files: edit one to rotate."""
    refs = fleet.spec.all_api_keys
    if not refs:
        return None
    if secrets_dir is None:
        key = os.environ.get(API_KEY_ENV)
        if not key or len(refs) > 1:
            raise LocalError(
                f"the fleet names {len(refs)} API key(s) ({', '.join(r.path for r in refs)}): pass "
                "--secrets-dir DIR with each key in DIR/<secretName>/<key>"
                + (f", or export {API_KEY_ENV}=<key>" if len(refs) == 1 else "")
            )
        directory = secrets_file(fleet.metadata.name)
        target = directory / refs[0].path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        target.touch(mode=0o600)
        target.write_text(key, encoding="utf-8")
        return directory
    directory = Path(secrets_dir).resolve()
    missing = [ref.path for ref in refs if not (directory / ref.path).is_file()]
    if missing:
        raise LocalError(f"--secrets-dir {directory}: no file for the API key(s) {', '.join(missing)}")
    return directory


def _head_env(fleet: ModelFleet, *, high_throughput: bool, secrets_dir: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    directory = keys_dir(fleet, secrets_dir)
    if directory is not None:
        env[API_KEYS_DIR_ENV] = str(directory)
    if high_throughput:
        env.update(HIGH_THROUGHPUT_ENV)
    return env


def _join(address: str, serve_port: int) -> RayHead:
    url = urllib.parse.urlparse(address if "://" in address else f"http://{address}")
    head = RayHead(root="", gcs_port=0, dashboard_port=url.port or 8265, serve_port=serve_port, owned=False)
    if url.hostname not in ("127.0.0.1", "localhost") or not head.reachable():
        raise LocalError(f"no Ray dashboard at {address} (use the dashboard address, e.g. 127.0.0.1:8265)")
    return head


def up(
    path: str,
    *,
    address: str | None,
    cpu: bool,
    serve_port: int,
    num_cpus: int | None,
    timeout_s: float,
    allow_open_ports: bool = False,
    secrets_dir: str | None = None,
    out: TextIO = sys.stdout,
) -> LocalFleet:
    """Deploy a fleet locally and wait until every model is ready, asleep or failed.

    A fleet that is already running is updated in place; its Ray head keeps the environment it was
    started with (high-throughput mode on or off), as a RayService's pods do until they are replaced.
    """
    document = load_fleet(path, cpu=cpu)
    fleet = ModelFleet.model_validate(copy.deepcopy(document))
    # spec.highThroughput applies here as on a cluster: the head keeps every listener on 127.0.0.1, the ones
    # Ray opens on all interfaces whatever its settings included (unless allow_open_ports).
    env = _head_env(fleet, high_throughput=fleet.spec.high_throughput, secrets_dir=secrets_dir)
    state = state_file(fleet.metadata.name)
    if state.exists() and RayHead.load(state).reachable():
        head = RayHead.load(state)
        print(f"updating the running fleet {fleet.metadata.name} ({head.dashboard_url})", file=out)
    elif address:
        head = _join(address, serve_port)
    else:
        cpus = num_cpus or max(2, os.cpu_count() or 2) * 2
        print(f"starting a local Ray head on 127.0.0.1 ({cpus} logical CPUs)", file=out)
        head = start_head(
            num_cpus=cpus,
            serve_port=serve_port,
            extra_env=env,
            loopback_only=not allow_open_ports,
            route_by_model=True,
        )
    head.save(state)
    yamlio_path = state.with_suffix(".fleet.yaml")
    yamlio_path.write_text(yamlio.dump(document), encoding="utf-8")
    serve_config = local_serve_config(fleet, head.serve_port)
    write_unified_routes(head, serve_config)  # before the deploy, whose new routes restart HAProxy
    try:
        head.deploy(serve_config)
    except RuntimeError as error:
        raise LocalError(str(error)) from None
    local = LocalFleet(document=document, head=head)
    _follow(local, timeout_s=timeout_s, out=out)
    return local


def _follow(local: LocalFleet, *, timeout_s: float, out: TextIO) -> None:
    """Print each model's state as it changes until all have settled (or the deadline passes)."""
    started = time.monotonic()
    seen: dict[str, str] = {}

    def settled() -> bool:
        status = local.status()
        for model in status.models:
            line = model.state + (f": {model.message}" if model.message else "")
            if seen.get(model.name) != line:
                seen[model.name] = line
                print(f"  [{time.monotonic() - started:5.1f}s] {model.name}: {line}", file=out, flush=True)
        return all(m.state in SETTLED for m in status.models)

    try:
        wait_for("the models to load", settled, timeout_s=timeout_s, every_s=1.0)
        # The models can settle (at zero replicas, say) before the router answers: `up` returns when the
        # unified endpoint answers through whatever fronts HTTP. Serve's route table is not enough: HAProxy
        # lists a route before its health check has passed a replica, and queues requests until then.
        remaining = max(1.0, timeout_s - (time.monotonic() - started))
        wait_for("the unified endpoint", local.head.answers_healthz, timeout_s=remaining)
    except TimeoutError as error:
        raise LocalError(f"{error}; `modelfleet status` shows where each model is") from error


def endpoints(local: LocalFleet) -> list[tuple[str, str]]:
    """(what, URL) pairs: the unified endpoint, then each model's own prefix."""
    base = local.head.serve_url
    rows = [("all models (by the `model` field)", f"{base}/v1")]
    rows += [(name, f"{base}/{name}/v1") for name in _names(local.document)]
    return rows


def _names(document: dict[str, Any]) -> list[str]:
    return [str(m["name"]) for m in document["spec"]["models"]]


def summary(local: LocalFleet) -> str:
    """The table `up` and `status` print."""
    status = local.status()
    lines = [f"fleet {local.name}: {status.phase} ({status.ready} models ready)", ""]
    lines.append(f"  {'MODEL':<20} {'STATE':<13} {'REPLICAS':<9} ENDPOINT")
    for model in status.models:
        replicas = "-" if model.replicas is None else str(model.replicas)
        lines.append(
            f"  {model.name:<20} {model.state:<13} {replicas:<9} {local.head.serve_url}/{model.name}/v1"
        )
        if model.message:
            lines.append(f"  {'':<20} {model.message}")
    for alias in status.aliases:
        split = ", ".join(f"{t.model} {t.weight} ({t.state})" for t in alias.targets)
        lines.append(f"  {alias.name:<20} {'alias':<13} {'-':<9} {split}")
    lines += ["", f"  unified endpoint: {local.head.serve_url}/v1  (OpenAI API, routed by `model`)"]
    if local.head.metrics_url:
        lines.append(f"  metrics:          {local.head.metrics_url}  (Prometheus, Ray's and ModelFleet's)")
    return "\n".join(lines)


def running(name: str | None) -> LocalFleet:
    """The fleet `up` started (the only one, or the one named)."""
    candidates = (
        sorted(STATE_DIR.glob("*.fleet.yaml"))
        if name is None
        else [state_file(name).with_suffix(".fleet.yaml")]
    )
    candidates = [c for c in candidates if c.exists()]
    if len(candidates) != 1:
        raise LocalError(
            "no local fleet is running (start one with `modelfleet up FILE`)"
            if not candidates
            else "several local fleets run: name one"
        )
    fleet_file = candidates[0]
    head = RayHead.load(fleet_file.with_name(fleet_file.name.replace(".fleet.yaml", ".json")))
    if not head.reachable():
        raise LocalError(f"the Ray head of this fleet is not answering at {head.dashboard_url}")
    return LocalFleet(document=yamlio.load_file(fleet_file)[0], head=head)


def down(name: str | None, out: TextIO = sys.stdout) -> None:
    """Stop what `up` started and forget it; a joined Ray only loses our applications."""
    candidates = sorted(STATE_DIR.glob("*.json")) if name is None else [state_file(name)]
    candidates = [c for c in candidates if c.exists()]
    if not candidates:
        raise LocalError("no local fleet to stop")
    for state in candidates:
        head = RayHead.load(state)
        if head.owned:
            ended = stop_head(head)
            print(f"stopped {state.stem}: {ended} processes ended, {head.root} removed", file=out)
        elif head.reachable():
            head.request("DELETE", "/api/serve/applications/")
            print(f"removed {state.stem}'s applications from the Ray at {head.dashboard_url}", file=out)
        state.unlink()
        state.with_suffix(".fleet.yaml").unlink(missing_ok=True)
        shutil.rmtree(secrets_file(state.stem), ignore_errors=True)


__all__ = ["LocalError", "LocalFleet", "down", "endpoints", "running", "summary", "up"]
