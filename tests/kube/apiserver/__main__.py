"""`python -m tests.kube.apiserver [--port N] [--crd PATH ...]`: an emulated API server for people.

Prints a KUBECONFIG path for kubectl and `modelfleet operator`; runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import sys
import threading

from tests.kube.apiserver.runner import running_apiserver

OUR_CRD = pathlib.Path("crds/modelfleets.modelfleet.dev.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube.apiserver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--crd",
        type=pathlib.Path,
        action="append",
        default=[],
        help="CRD YAML to install (repeatable; default: our CRD if present)",
    )
    parser.add_argument("--no-kuberay", action="store_true", help="skip the KubeRay CRDs ($KUBERAY_CRDS)")
    args = parser.parse_args(argv)
    crds = args.crd or [OUR_CRD]
    with running_apiserver(crds, kuberay=not args.no_kuberay, port=args.port) as server:
        # What exists now lives as long as the process: mostly the CRDs (the KubeRay ones alone are
        # some 90,000 parsed YAML objects). Frozen, it is left out of the collector's full passes,
        # which would otherwise walk all of it again every few thousand requests.
        gc.freeze()
        print(f"API server emulator at {server.url}", flush=True)
        print(f"export KUBECONFIG={server.kubeconfig_path}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
