"""dashboards/modelfleet.json as Grafana loads it: every panel queries, and every query follows the fleet
and model pickers. (That every metric and label it queries exists is checked against a running fleet in
tests/serving/test_metrics.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "modelfleet.json"


def load() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def test_panels_have_unique_ids_and_queries() -> None:
    panels = load()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_query_follows_the_fleet_picker() -> None:
    variables = {v["name"] for v in load()["templating"]["list"]}
    assert {"datasource", "fleet", "model"} <= variables
    for panel in load()["panels"]:
        for target in panel.get("targets", []):
            assert 'fleet=~"$fleet"' in target["expr"], (panel["title"], target["expr"])


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load()["panels"]:
        g = panel["gridPos"]
        cells = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not cells & taken, panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        taken |= cells
