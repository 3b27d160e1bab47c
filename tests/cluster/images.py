"""What each container image stands for in the test cluster, and the operator image's environment.

There is no image store here, so a container's image names a Python environment on this machine:
- the operator image (`images/operator.Dockerfile`, the chart's default image) is a virtualenv built the
  way that Dockerfile builds `/opt/modelfleet`: the project copied as its COPY lines copy it, `pip wheel
  --no-deps` of that copy, and the wheel installed with its `operator` extra and nothing else. So the
  operator pod runs exactly what the image would hold, and a dependency missing from the extra fails here
  as it would fail in the image;
- any other image (the serving image, a user's own) is this project's virtualenv, which holds what the
  serving image holds, on CPU: Ray, Ray Serve LLM's dependencies, vLLM's CPU build and our wheel.

The operator's environment is cached under the user's cache (`binaries.cache_dir()`), keyed by the hash of
pyproject.toml (its dependencies); when only the source changed, the new wheel is reinstalled without its
dependencies, which takes seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster import binaries

REPO = Path(__file__).resolve().parents[2]
OPERATOR_IMAGE = "ghcr.io/modelfleet/modelfleet-operator"
# What images/operator.Dockerfile copies into its builder stage (its COPY lines).
OPERATOR_IMAGE_SOURCES = ("pyproject.toml", "README.md", "operator", "serving_app", "modelfleet_contract")
SERVING_ENVIRONMENT = Path(sys.executable).parent.parent
PIP_TIMEOUT_S = 1200
MIN_SETUPTOOLS = 75  # pyproject.toml's [build-system]


@dataclass(frozen=True)
class Image:
    """What a container image stands for here: a virtualenv (its `bin/` first on PATH) and what the
    image's Dockerfile sets around it."""

    environment: Path
    env: dict[str, str] = field(default_factory=dict)  # its ENV lines
    workdir: str | None = None  # its WORKDIR; None: the pod's home folder stands for the image's
    entrypoint: tuple[str, ...] = ()
    ray: bool = False  # a Ray image: Ray's temp dir goes to a short folder of the pod's own

    @property
    def path(self) -> str:
        return f"{self.environment / 'bin'}:/usr/local/bin:/usr/bin:/bin"


def image(name: str) -> Image:
    """The image a container names, as this machine holds it."""
    if repository(name) == OPERATOR_IMAGE:
        return Image(
            operator_environment(),
            # images/operator.Dockerfile's ENV, WORKDIR and ENTRYPOINT.
            env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
            workdir="/tmp",
            entrypoint=("modelfleet", "operator"),
        )
    return Image(
        SERVING_ENVIRONMENT,
        # The test world has no network: models are files, nothing phones home.
        env={
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "NO_COLOR": "1",
        },
        ray=True,
    )


def repository(image: str) -> str:
    """`ghcr.io/x/y:tag` or `...@sha256:...` -> `ghcr.io/x/y`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for name in OPERATOR_IMAGE_SOURCES:
        path = root / name
        if path.is_dir():
            out += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
        else:
            out.append(path)
    return out


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in _files(REPO):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv)}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _offline_backend() -> bool:
    """This Python has the build backend pyproject.toml names (setuptools >= 75), so the wheel builds without
    fetching it: what the private network namespace of the tests needs, where PyPI is out of reach."""
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= MIN_SETUPTOOLS
    except (ImportError, ValueError):
        return False


def build_wheel(pip: Path, out: Path) -> Path:
    """The project's wheel, built as the Dockerfile builds it: from a copy of what it COPYs (so nothing
    else of the work tree can leak in, and the build leaves no files in it). With build isolation (the
    backend fetched, as in the image's builder stage) unless this Python already has the backend."""
    with tempfile.TemporaryDirectory(prefix="operator-image-src-") as src:
        for path in _files(REPO):
            target = Path(src) / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        builder = (
            [sys.executable, "-m", "pip", "wheel", "--no-build-isolation"]
            if _offline_backend()
            else [
                str(pip),
                "wheel",
            ]
        )
        _run([*builder, "--quiet", "--no-deps", "--wheel-dir", str(out), src], "pip wheel")
    [wheel] = out.glob("modelfleet-*.whl")
    return wheel


def operator_environment(*, log: bool = True) -> Path:
    """The operator image's virtualenv (built, or brought up to date with the source, first)."""
    deps = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = binaries.cache_dir() / "images" / f"operator-{deps}"
    marker = venv / ".modelfleet-source"
    source = _source_hash()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == source:
            return venv
        started = time.monotonic()
        fresh = not (venv / ".modelfleet-deps").exists()
        if fresh:
            for stale in venv.parent.glob("operator-*"):  # earlier dependencies' environments
                shutil.rmtree(stale, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        pip = venv / "bin" / "pip"
        with tempfile.TemporaryDirectory(prefix="operator-image-wheel-") as wheels:
            wheel = build_wheel(pip, Path(wheels))
            if fresh:
                # The Dockerfile's line: the wheel with its `operator` extra, resolved by pip.
                _run([str(pip), "install", "--quiet", f"{wheel}[operator]"], "pip install .[operator]")
                (venv / ".modelfleet-deps").write_text(deps)
            else:
                _run(
                    [str(pip), "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)],
                    "pip install (the new wheel)",
                )
        marker.write_text(source)
        if log:
            print(
                f"[cluster] operator image environment {'built' if fresh else 'updated'} in "
                f"{time.monotonic() - started:.1f}s -> {venv}",
                file=sys.stderr,
            )
    return venv


def serving_image_distributions() -> dict[str, str]:
    """{distribution: version} that the serving image's `pip install` line installs, as pip's resolver
    says (`--dry-run --report`: metadata only, nothing downloaded). Kept by its requirements, which pin
    ray[llm] exactly and so its vLLM; resolved by `python -m tests.cluster build`, outside the private network
    namespace the tests run in."""
    import json
    import re

    dockerfile = (REPO / "images" / "serving.Dockerfile").read_text()
    ray = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M)
    line = re.search(r'"ray\[llm\]==\$\{RAY_VERSION\}" "(av[^"]*)" "(soundfile[^"]*)"', dockerfile)
    if ray is None or line is None:
        raise RuntimeError("images/serving.Dockerfile's pip line changed: update tests/cluster/images.py")
    requirements = [f"ray[llm]=={ray.group(1)}", *line.groups()]
    key = hashlib.sha256(" ".join(requirements).encode()).hexdigest()[:12]
    report = binaries.cache_dir() / "images" / f"serving-resolution-{key}.json"
    if not report.exists():
        report.parent.mkdir(parents=True, exist_ok=True)
        partial = report.with_name(report.name + ".partial")
        resolve = ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(partial)]
        _run([sys.executable, "-m", "pip", *resolve, *requirements], "pip's resolution of the serving image")
        partial.rename(report)
    return {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
