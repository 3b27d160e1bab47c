"""The only contract between the operator and the serving app: the `args` of each Serve application.

Every fleet the renderer can produce must validate with `serving_app`'s own strict args models, and the
local `modelfleet up` config must be the rendered one (DESIGN §2, §5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelfleet.local import local_serve_config
from modelfleet.render import render
from serving_app.args import ModelAppArgs, RouterAppArgs
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


def test_the_keys_directory_is_where_the_renderer_mounts_it() -> None:
    from modelfleet.render import serve_config
    from serving_app import auth

    assert serve_config.API_KEYS_DIR_ENV == auth.API_KEYS_DIR_ENV
    assert serve_config.API_KEYS_DIR == auth.DEFAULT_API_KEYS_DIR


def test_the_loopback_switch_modelfleet_up_sets_is_the_one_replicas_read() -> None:
    from modelfleet import localray
    from serving_app import loopback

    assert localray.LOOPBACK_ENV == loopback.LOOPBACK_ENV


def test_haproxys_routing_mark_is_the_one_the_servers_metrics_read() -> None:
    """The header HAProxy puts on the fleet endpoint's requests it routes by model (operator side) is the
    one a model's server reads to count them as the fleet endpoint's."""
    from modelfleet import haproxy
    from serving_app import metrics

    assert (haproxy.ROUTED_HEADER.encode(), b"unified") == metrics.ROUTED_HEADER
