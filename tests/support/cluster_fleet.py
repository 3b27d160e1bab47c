"""A fleet on a cluster seen the way its users see it (kubectl and the OpenAI API), and the steps of a wake
from zero workers as they happen: shared by the end-to-end tests and `bench wake`."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import openai
import yaml

from serving_app.server import server_deployment_name
from tests.kube.conftest import Kube

# The client's key for the fleets these run (a Secret `fleet-keys` with key `key` holds it).
API_KEY = "e2e-key-7c1d"
WORKER_GROUP = "cpu"


def cluster_spec(models: list[dict[str, Any]], *, max_workers: int) -> dict[str, Any]:
    """A fleet spec for the test cluster at its defaults: one CPU worker group from zero workers (KubeRay's
    autoscaler adds and removes them), a small head, the `fleet-keys` key; highThroughput left unset (on)."""
    worker = {"name": WORKER_GROUP, "gpusPerWorker": 0, "cpusPerWorker": 4, "memoryPerWorker": "8Gi"}
    return {
        "models": models,
        "workers": [{**worker, "maxWorkers": max_workers}],
        "head": {"cpus": 1, "memory": "4Gi"},
        "apiKey": {"secretName": "fleet-keys", "key": "key"},
    }


class Fleet:
    """The fleet under test, seen the way its users see it: kubectl and the OpenAI API."""

    def __init__(self, kube: Kube, name: str, document: dict[str, Any], operator: str) -> None:
        """`operator`: the name of the operator's Deployment (in OPERATOR_NAMESPACE)."""
        self.kube, self.name, self.document, self.operator = kube, name, document, operator

    def apply(self, document: dict[str, Any] | None = None) -> None:
        self.kube.run("apply", "-f", "-", stdin=yaml.safe_dump(document or self.document))

    def get(self) -> dict[str, Any]:
        found = self.kube.get("modelfleet", self.name)
        assert found is not None, f"ModelFleet {self.name} is gone"
        return found

    def phase(self) -> str:
        return str((self.get().get("status") or {}).get("phase", ""))

    def model_states(self) -> dict[str, str]:
        return {m["name"]: m["state"] for m in (self.get().get("status") or {}).get("models", [])}

    def rayservice(self) -> dict[str, Any]:
        found = self.kube.get("rayservices.v1.ray.io", self.name)
        assert found is not None
        return found

    def active_cluster(self) -> str:
        status = self.rayservice().get("status") or {}
        return str((status.get("activeServiceStatus") or {}).get("rayClusterName", ""))

    def wait_phase(self, phase: str, timeout_s: float) -> float:
        """Wait with `kubectl wait` for the phase; the seconds it took."""
        started = time.monotonic()
        self.kube.run(
            "wait",
            f"modelfleet/{self.name}",
            f"--for=jsonpath={{.status.phase}}={phase}",
            f"--timeout={int(timeout_s)}s",
            timeout=timeout_s + 30,
        )
        return time.monotonic() - started

    def serve_addresses(self) -> list[str]:
        """Ready endpoints of the fleet's serve Service: where in-cluster clients of the endpoint land."""
        out = self.kube.run(
            "get", "endpointslices", "-l", f"kubernetes.io/service-name={self.name}-serve-svc", "-o", "json"
        ).stdout
        return [
            endpoint["addresses"][0]
            for item in json.loads(out)["items"]
            for endpoint in item.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
        ]

    def base_url(self) -> str:
        addresses = self.serve_addresses()
        assert addresses, "the serve Service has no ready endpoint"
        return f"http://{addresses[0]}:8000"

    def client(
        self, prefix: str = "", *, timeout_s: float = 300, base_url: str | None = None
    ) -> openai.OpenAI:
        # No retries (a failure must reach the test); no proxy from the environment for pod addresses.
        return openai.OpenAI(
            base_url=f"{base_url or self.base_url()}{prefix}/v1",
            api_key=API_KEY,
            max_retries=0,
            timeout=timeout_s,
            http_client=openai.DefaultHttpxClient(trust_env=False),
        )

    def pods(self) -> list[dict[str, Any]]:
        return [p for p in self.kube.items("pods") if p["metadata"]["name"].startswith(f"{self.name}-")]

    def worker_pods(self) -> list[dict[str, Any]]:
        """The worker pods of the active cluster that are not being deleted."""
        cluster = self.active_cluster()
        return [
            p
            for p in self.pods()
            if p["metadata"]["labels"].get("ray.io/node-type") == "worker"
            and p["metadata"]["labels"].get("ray.io/cluster") == cluster
            and not p["metadata"].get("deletionTimestamp")
        ]

    def high_throughput(self) -> bool:
        return bool(self.document["spec"].get("highThroughput", True))


class WakeTimeline:
    """When each step of a wake from zero workers is first seen, polled twice a second: the worker pod
    created, its Ray node up (the pod Ready: its probe asks the raylet), a replica of the model's server
    RUNNING (Serve's own view, from the head's dashboard), and every message the fleet's status gave the
    model."""

    def __init__(self, fleet: Fleet, model: str) -> None:
        self.fleet, self.model = fleet, model
        self.started = time.monotonic()
        self.seen: dict[str, float] = {}
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _mark(self, step: str) -> None:
        self.seen.setdefault(step, time.monotonic() - self.started)

    def _replica_running(self, head_ip: str) -> bool:
        url = f"http://{head_ip}:8265/api/serve/applications/"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                apps = json.loads(response.read())["applications"]
        except (OSError, ValueError, KeyError):
            return False
        deployments = (apps.get(self.model) or {}).get("deployments") or {}
        server = deployments.get(server_deployment_name(self.model))
        return any(r.get("state") == "RUNNING" for r in (server or {}).get("replicas") or [])

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = self.fleet.worker_pods()
            if pods:
                self._mark("worker pod created")
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for p in pods
                for c in (p.get("status") or {}).get("conditions") or []
            ):
                self._mark("Ray node up")
            heads = [
                p for p in self.fleet.pods() if p["metadata"]["labels"].get("ray.io/node-type") == "head"
            ]
            head_ip = (heads[0].get("status") or {}).get("podIP") if heads else None
            if head_ip and "Ray node up" in self.seen and self._replica_running(head_ip):
                self._mark("replica RUNNING")
            model = next(m for m in self.fleet.get()["status"]["models"] if m["name"] == self.model)
            if model.get("message") and model["message"] not in self.messages:
                self.messages.append(model["message"])
            self._stop.wait(0.5)

    def __enter__(self) -> WakeTimeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def first_token_s(client: openai.OpenAI, model: str, prompt: str = "Wake up") -> float:
    """Seconds from sending a streaming chat to its first token (AssertionError when none comes)."""
    sent = time.monotonic()
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=4, stream=True
    )
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.monotonic() - sent
    assert first is not None, f"{model} answered nothing"
    return first
