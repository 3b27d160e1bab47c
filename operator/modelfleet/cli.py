"""The `modelfleet` command: render, validate, crd, import (and the local backend and operator)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from modelfleet import yamlio
from modelfleet.api.v1alpha1 import KIND, ModelFleet
from modelfleet.api.validation import validate_fleet


def _fleets(path: str) -> tuple[list[ModelFleet], list[str]]:
    """Every ModelFleet document of a file, and one line per problem (prefixed by document when several)."""
    try:
        documents = yamlio.load_file(path)
    except (OSError, ValueError, yaml.YAMLError) as error:
        return [], [f"{path}: {error}"]
    fleets: list[ModelFleet] = []
    lines: list[str] = []
    for index, document in enumerate(documents):
        where = f"{path}" + (f" (document {index + 1})" if len(documents) > 1 else "")
        if document.get("kind") != KIND:
            lines.append(f"{where}: kind: {document.get('kind')!r}: expected {KIND}")
            continue
        fleet, problems = validate_fleet(document)
        name = (document.get("metadata") or {}).get("name", "?")
        lines.extend(f"{where}: ModelFleet {name}: {problem}" for problem in problems)
        if fleet is not None:
            fleets.append(fleet)
    if not documents:
        lines.append(f"{path}: no YAML documents found")
    return fleets, lines


def cmd_render(args: argparse.Namespace) -> int:
    from modelfleet.render import render_all

    fleets, problems = _fleets(args.file)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    kwargs = {"default_image": args.image} if args.image else {}
    sys.stdout.write(yamlio.dump_all([obj for fleet in fleets for obj in render_all(fleet, **kwargs)]))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    fleets, problems = _fleets(args.file)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    for fleet in fleets:
        print(f"{args.file}: ModelFleet {fleet.metadata.name}: valid ({len(fleet.spec.models)} models)")
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from modelfleet.api.crd import build_crd

    text = yamlio.dump(build_crd())
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from modelfleet.migrate import import_serve_config

    documents = yamlio.load_file(args.file)
    if len(documents) != 1:
        print(f"{args.file}: expected one Ray Serve config document, found {len(documents)}", file=sys.stderr)
        return 1
    name = args.name or Path(args.file).stem
    migration = import_serve_config(documents[0], name=_label(name), namespace=args.namespace)
    _, problems = validate_fleet(migration.fleet)
    sys.stdout.write(yamlio.dump(migration.fleet))
    for dropped in migration.dropped:
        print(f"not carried: {dropped}", file=sys.stderr)
    for problem in problems:
        print(f"needs a fix: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_operator(args: argparse.Namespace) -> int:
    import os

    import kopf

    import modelfleet.handlers  # noqa: F401  (importing registers the handlers with kopf)
    from modelfleet import metrics

    if args.default_image:
        os.environ["MODELFLEET_DEFAULT_IMAGE"] = args.default_image
    if args.no_serve_details:
        os.environ["MODELFLEET_SERVE_DETAILS"] = "off"
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    kopf.configure(verbose=args.verbose)
    settings = kopf.OperatorSettings()
    # Named namespaces need no namespace listing, which the namespaced install's RBAC does not grant (and
    # which kopf retried for about a minute at every start): watch exactly those. The price: a CRD that
    # appears later (KubeRay installed after the operator) is noticed on the operator's next start.
    settings.scanning.disabled = bool(args.namespace) and not any(
        set(name) & set("*?[!") for name in args.namespace
    )
    kopf.run(
        settings=settings,
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from modelfleet import local

    fleet = local.up(
        args.file,
        address=args.address,
        cpu=args.cpu,
        serve_port=args.port,
        num_cpus=args.num_cpus,
        timeout_s=args.timeout,
        allow_open_ports=args.allow_open_ports,
        secrets_dir=args.secrets_dir,
    )
    print()
    print(local.summary(fleet))
    print(f"\nstop it with: modelfleet down {fleet.name}")
    failed = [m for m in fleet.status().models if m.state == "Failed"]
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from modelfleet import local

    print(local.summary(local.running(args.name)))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from modelfleet import local

    local.down(args.name)
    return 0


def _label(text: str) -> str:
    from modelfleet.migrate import _dns_label

    return _dns_label(text)[:47].strip("-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser(
        "render", help="print the RayService, NetworkPolicy and HAProxy ConfigMap a fleet renders to"
    )
    render.add_argument("file", help="ModelFleet YAML (several documents allowed; - for stdin)")
    render.add_argument("--image", help="serving image for fleets that set none")
    render.set_defaults(func=cmd_render)

    validate = commands.add_parser("validate", help="check a fleet offline: schema, CEL and semantic rules")
    validate.add_argument("file", help="ModelFleet YAML (several documents allowed; - for stdin)")
    validate.set_defaults(func=cmd_validate)

    crd = commands.add_parser("crd", help="write the ModelFleet CRD generated from the API models")
    crd.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    crd.set_defaults(func=cmd_crd)

    migrate = commands.add_parser("import", help="convert a Ray Serve LLM config into a ModelFleet")
    migrate.add_argument("file", help="Ray Serve config YAML with ray.serve.llm applications")
    migrate.add_argument("--name", help="fleet name (default: the file name)")
    migrate.add_argument("--namespace", default="default", help="fleet namespace (default: default)")
    migrate.set_defaults(func=cmd_import)

    up = commands.add_parser("up", help="run a fleet on a local Ray (no Kubernetes)")
    up.add_argument("file", help="ModelFleet YAML")
    up.add_argument("--address", help="join a running Ray by its dashboard address instead of starting one")
    up.add_argument(
        "--cpu", action="store_true", help="run every model with accelerator: cpu (vLLM's CPU build)"
    )
    up.add_argument(
        "--port", type=int, default=8000, help="HTTP port of the fleet on 127.0.0.1 (default 8000)"
    )
    up.add_argument("--num-cpus", type=int, help="logical CPUs of the local Ray head")
    up.add_argument("--timeout", type=float, default=900, help="seconds to wait for the models (default 900)")
    up.add_argument(
        "--allow-open-ports",
        action="store_true",
        help="leave the listeners Ray opens on every interface (replicas' gRPC, HAProxy's stats and metrics) "
        "as Ray opens them; by default they are kept on 127.0.0.1 like the rest",
    )
    up.add_argument(
        "--secrets-dir",
        help="folder holding the fleet's API keys as DIR/<secretName>/<key> (the layout Kubernetes mounts "
        "Secrets in); edit a file to rotate its key. For a single key, MODELFLEET_API_KEY also works",
    )
    up.set_defaults(func=cmd_up)

    status = commands.add_parser("status", help="the state of the local fleet, per model")
    status.add_argument("name", nargs="?", help="fleet name (when several run)")
    status.set_defaults(func=cmd_status)

    down = commands.add_parser("down", help="stop what `modelfleet up` started")
    down.add_argument("name", nargs="?", help="fleet name (default: every local fleet)")
    down.set_defaults(func=cmd_down)

    operator = commands.add_parser("operator", help="run the Kubernetes operator (kopf)")
    scope = operator.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    operator.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    operator.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port")
    operator.add_argument("--default-image", help="serving image for fleets that set none")
    operator.add_argument(
        "--no-serve-details",
        action="store_true",
        help="status from KubeRay alone: do not read Serve's replicas from each fleet's dashboard "
        "(then a model at zero replicas shows Ready, not ScaledToZero)",
    )
    operator.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    operator.set_defaults(func=cmd_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from modelfleet.local import LocalError

    try:
        code: int = args.func(args)
    except LocalError as error:
        print(f"modelfleet {args.command}: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # python -m modelfleet.cli
    sys.exit(main())
