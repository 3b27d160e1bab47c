"""The `args` of each Serve application, as the renderer builds them, validate with the contract's models the
serving app checks them with (modelfleet_contract/args.py), for every fleet the renderer can produce; and the
local `modelfleet up` config is the rendered one. (Names, paths and texts both sides use are single-sourced in
modelfleet_contract; import-linter keeps each side out of the other's code.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelfleet.local import local_serve_config
from modelfleet.render import render
from modelfleet_contract.args import ModelAppArgs, RouterAppArgs
from tests.unit.conftest import CASES, EXAMPLES, load_fleet

FLEETS = CASES + EXAMPLES


@pytest.mark.parametrize("path", FLEETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_rendered_args_validate_with_the_serving_app(path: Path) -> None:
    fleet = load_fleet(path)
    config = yaml.safe_load(render(fleet)["spec"]["serveConfigV2"])
    *models, router = config["applications"]
    for app in models:
        args = ModelAppArgs.model_validate(app["args"])
        assert args.name == app["name"]
        assert app["import_path"] == "serving_app.app:build_model_app"
    routed = RouterAppArgs.model_validate(router["args"])
    assert list(routed.models) == [app["name"] for app in models]
    assert router["import_path"] == "serving_app.app:build_router_app"


def test_local_config_is_the_rendered_one_on_loopback() -> None:
    fleet = load_fleet(next(p for p in EXAMPLES if p.parent.name == "local"))
    rendered = yaml.safe_load(render(fleet)["spec"]["serveConfigV2"])
    local = local_serve_config(fleet, 18000)
    assert local["applications"] == rendered["applications"]
    assert local["http_options"] == {"host": "127.0.0.1", "port": 18000}
