"""Result files: one JSON per part under bench/results/, with the machine description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.machine import describe

RESULTS_DIR = Path(__file__).parent / "results"


def write(part: str, body: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{part}.json"
    path.write_text(json.dumps({"machine": describe(), **body}, indent=2) + "\n", encoding="utf-8")
    return path


def read(part: str, results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((results_dir / f"{part}.json").read_text(encoding="utf-8"))
    return found
