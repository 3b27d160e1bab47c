"""Session fixtures: one tiny model and one fleet started with `modelfleet up`'s code, for all serving tests.

Starting Ray and loading vLLM engines costs minutes on 2 cores, so the whole suite shares them. The fleet is
deployed the way KubeRay deploys it: the rendered serveConfigV2 PUT to the local Ray dashboard.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelfleet import local
from modelfleet.localray import free_port, stop_head
from tests.serving.fleetspec import ADAPTERS, KEY_FILES, Checkpoints, Fleet, fleet_document, write_secrets

# Engines load in ~30-60 s each on 2 cores; the broken model needs three failed starts to settle.
DEPLOY_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="session")
def checkpoints(session_root: Path) -> Checkpoints:
    from tests.support.tinymodel import (
        build_tiny_adapter,
        build_tiny_model,
        build_tiny_speech_model,
        build_tiny_vision_model,
    )

    llama = build_tiny_model(session_root / "tiny-llama")
    return Checkpoints(
        llama=llama,
        adapters={
            name: build_tiny_adapter(llama, session_root / "adapters" / name, seed=seed)
            for seed, name in enumerate(ADAPTERS, start=1)
        },
        vision=build_tiny_vision_model(session_root / "tiny-qwen2-vl"),
        speech=build_tiny_speech_model(session_root / "tiny-whisper"),
    )


@pytest.fixture(scope="session")
def state_dir(session_root: Path) -> Iterator[Path]:
    """Where `modelfleet up` keeps its state for this session (MODELFLEET_HOME)."""
    previous = local.STATE_DIR
    local.STATE_DIR = session_root / "state"
    yield local.STATE_DIR
    local.STATE_DIR = previous


# Every serving test runs against both data paths: Ray's high-throughput mode (the default: HAProxy, each
# model's server its own ingress) and Serve's proxy with our ingresses, except those marked
# default_path_only: the tests of the models the standard path's fleet leaves out
# (fleetspec.DEFAULT_PATH_ONLY_MODELS) and the load test. pytest finishes one fleet before it starts the next.
MODES = {"standard": False, "high-throughput": True}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the default_path_only tests' runs on the standard path's fleet."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        standard = callspec is not None and callspec.params.get("fleet") == "standard"
        (dropped if standard and item.get_closest_marker("default_path_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# Package scope: the last fleet stops when the serving tests end, not with the session (the kube and e2e
# tiers that follow need the memory and the cores).
@pytest.fixture(scope="package", params=list(MODES))
def fleet(
    request: pytest.FixtureRequest,
    session_root: Path,
    checkpoints: Checkpoints,
    state_dir: Path,
) -> Iterator[Fleet]:
    high_throughput = MODES[request.param]
    path = session_root / f"fleet-{request.param}.yaml"
    path.write_text(yaml.safe_dump(fleet_document(checkpoints, high_throughput=high_throughput)))
    secrets = session_root / f"secrets-{request.param}"
    write_secrets(secrets, KEY_FILES)
    started = time.monotonic()
    progress = io.StringIO()
    try:
        running = local.up(
            str(path),
            address=None,
            cpu=True,
            serve_port=free_port(),
            num_cpus=6,
            timeout_s=DEPLOY_TIMEOUT_S,
            secrets_dir=str(secrets),
            out=progress,
        )
    except Exception:
        # The per-model progress says which model never settled, the memory left whether engines were
        # squeezed out; pytest shows both under the error.
        import psutil

        memory = psutil.virtual_memory()
        print(progress.getvalue(), file=sys.stderr)
        print(f"memory: {memory.available >> 20} MiB available of {memory.total >> 20}", file=sys.stderr)
        for state in state_dir.glob("*.json"):
            stop_head(local.RayHead.load(state))
        raise
    try:
        yield Fleet(
            local=running,
            deploy_s=time.monotonic() - started,
            secrets_dir=secrets,
            high_throughput=high_throughput,
        )
    finally:
        local.down(running.name, out=progress)
