"""Adapters and aliases without Ray: how an alias picks its target, where an adapter is found, and the
404 a model's own server answers for a model it does not serve."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from modelfleet_contract.args import AliasTargetArgs, FrontDoorArgs
from serving_app.adapters import adapter_loader, model_card, pick_target, resolve_source
from serving_app.errors import FleetHTTPError
from serving_app.frontdoor import add_front_door

TARGETS = [AliasTargetArgs(model="v1", weight=90), AliasTargetArgs(model="v2", weight=10)]
OPEN = FrontDoorArgs(api_keys=[], max_request_bytes=65536, max_tokens=100, max_n=2, body_timeout_s=5)


def test_an_alias_splits_by_weight() -> None:
    picks = Counter(pick_target("chat", TARGETS, None) for _ in range(20_000))
    mean, sd = 2000, math.sqrt(20_000 * 0.1 * 0.9)
    assert abs(picks["v2"] - mean) <= 5 * sd, picks


def test_a_user_always_gets_the_same_target_and_users_split_by_weight() -> None:
    users = [f"user-{i}" for i in range(5000)]
    first = {user: pick_target("chat", TARGETS, user) for user in users}
    assert all(pick_target("chat", TARGETS, user) == target for user, target in first.items())
    share = Counter(first.values())["v2"] / len(users)
    assert 0.08 < share < 0.12, share
    # The hash includes the alias: one user is not pinned to the same position in every alias.
    other = [pick_target("other", TARGETS, user) for user in users]
    assert other != list(first.values())


def test_an_adapter_is_found_in_its_folder_and_a_bad_source_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "poet"
    folder.mkdir()
    assert resolve_source("poet", str(folder)) == str(folder)
    for bad in (str(tmp_path / "missing"), "./relative", "not-a-repo", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"adapter 'poet': source '{bad}'"):
            resolve_source("poet", bad)


def test_the_loader_answers_with_the_adapter_s_folder_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    loader = adapter_loader({"poet": str(tmp_path)})(download_timeout_s=30, max_tries=3)
    first = asyncio.run(loader.load_model_from_config(lora_model_id="poet", llm_config=None))
    second = asyncio.run(loader.load_model_from_config(lora_model_id="poet", llm_config=None))
    assert (first.model_id, first.local_path) == ("poet", str(tmp_path))
    assert first.lora_assigned_int_id != second.lora_assigned_int_id
    with pytest.raises(FleetHTTPError, match="Known models: poet"):
        asyncio.run(loader.load_model_from_config(lora_model_id="sonnet", llm_config=None))


def test_model_cards_name_an_adapter_s_model_and_an_alias_s_targets() -> None:
    assert model_card("poet", parent="alpha")["parent"] == "alpha"
    card = model_card("chat", targets=TARGETS)
    assert card["targets"] == [{"model": "v1", "weight": 90}, {"model": "v2", "weight": 10}]
    assert card["object"] == "model" and card["parent"] is None


def test_a_model_s_own_server_answers_an_unknown_model_with_a_404_listing_its_names() -> None:
    server = FastAPI()

    @server.post("/v1/chat/completions")
    @server.post("/v1/infer")
    async def reached(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode()}

    add_front_door(server, OPEN, endpoint="prefix", model="alpha", known_models=["alpha", "alpha-poet"])
    client = TestClient(server)
    for model in ("alpha", "alpha-poet"):
        assert client.post("/v1/chat/completions", json={"model": model, "messages": []}).status_code == 200
    reply = client.post("/v1/chat/completions", json={"model": "alpha-nope", "messages": []})
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["param"] == "model"
    assert error["message"] == "The model 'alpha-nope' does not exist. Known models: alpha, alpha-poet."
    assert client.post("/v1/infer", json={"model_id": "beta", "input": "x"}).status_code == 404
