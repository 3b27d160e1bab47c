"""`modelfleet operator` as a child process that tests and benchmarks can start, kill and stop, run from the
operator image's environment (tests/cluster/images.py: the wheel with its `operator` extra alone), so what
the tests drive is what the image ships."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

from modelfleet.localray import free_port, wait_for
from tests.cluster.images import operator_environment


class OperatorProcess:
    """The operator watching one namespace of the API server in `kubeconfig`, logging to `log`."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log: Path,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`args` are added to `modelfleet operator`; `env` to its environment (e.g. HTTP_PROXY, through
        which it reaches fleets' dashboards by their Service names in the test cluster)."""
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.args, self.env = args, env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = free_port()

    def start(self, timeout_s: float = 120) -> None:
        self.port = free_port()
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        command = [
            str(operator_environment() / "bin" / "modelfleet"),
            "operator",
            "-n",
            self.namespace,
            "--liveness",
            f"http://127.0.0.1:{self.port}/healthz",
            *self.args,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(
            f"the operator's liveness endpoint (log: {self.log})",
            self.healthy,
            timeout_s=timeout_s,
            every_s=0.2,
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
