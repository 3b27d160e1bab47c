"""Many variants on few replicas: LoRA adapters chosen per request, a weighted alias, prefix-aware routing.

alpha serves two random LoRA adapters (built with peft by the session's fixture, loaded by vLLM from their
folders as a real adapter would be); `canary` splits 3:1 between alpha and alpha-poet; gamma's two replicas
are picked by Ray Serve LLM's prefix-cache affinity router.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from modelfleet.localray import wait_for
from serving_app.server import server_deployment_name
from tests.serving.fleetspec import (
    ADAPTERS,
    ALWAYS_ON,
    API_KEY,
    CANARY,
    CANARY_WEIGHTS,
    MISSING_ADAPTER,
    MISSING_ADAPTER_SOURCE,
    PREFIX_ROUTED,
    Fleet,
)
from tests.serving.test_metrics import Samples, scrape

pytestmark = pytest.mark.serving
PROMPT = [{"role": "user", "content": "Tell me about the fleet of models"}]


def _reply(client: openai.OpenAI, model: str, **extra: object) -> tuple[str, str]:
    """(the model the reply names, its text) at temperature 0."""
    reply = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=12,
        temperature=0,
        **extra,  # type: ignore[arg-type]
    )
    return reply.model, reply.choices[0].message.content or ""


@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["unified", "model-prefix"])
def test_each_adapter_answers_by_name_differently_from_its_model_and_stably(
    fleet: Fleet, prefix: str
) -> None:
    client = fleet.client(prefix)
    replies = {model: _reply(client, model) for model in (ALWAYS_ON, *ADAPTERS)}
    for model, (named, _) in replies.items():
        assert named == model, f"a reply to {model} names {named}"
    texts = {model: text for model, (_, text) in replies.items()}
    print(f"replies at temperature 0 ({prefix or '/'}): {texts}")
    assert len(set(texts.values())) == len(texts), f"an adapter replied like its model or another: {texts}"
    # Both adapters live on alpha's one replica (max 1), alternating: greedy replies never change.
    for model in (*ADAPTERS, ALWAYS_ON, *reversed(ADAPTERS)):
        assert _reply(client, model)[1] == texts[model], f"{model} replied differently the second time"
    assert fleet.replicas(ALWAYS_ON, server_deployment_name(ALWAYS_ON)) == (1, 1)


@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["unified", "model-prefix"])
def test_infer_answers_with_the_adapter_it_names(fleet: Fleet, prefix: str) -> None:
    adapter = ADAPTERS[0]
    chat = fleet.client(prefix).chat.completions.create(
        model=adapter, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    reply = httpx.post(
        f"{fleet.url}{prefix}/v1/infer",
        json={"model_id": adapter, "input": "Hello", "params": {"max_tokens": 8, "temperature": 0}},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["text"] == chat.choices[0].message.content  # the adapter's greedy reply, not alpha's


@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["unified", "model-prefix"])
def test_an_unknown_adapter_is_404_listing_what_exists(fleet: Fleet, prefix: str) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        fleet.client(prefix).chat.completions.create(model="alpha-nope", messages=PROMPT, max_tokens=2)
    message = str(err.value)
    assert "alpha-nope" in message
    for known in (ALWAYS_ON, *ADAPTERS, MISSING_ADAPTER):
        assert known in message, message


@pytest.mark.parametrize("prefix", ["", f"/{ALWAYS_ON}"], ids=["unified", "model-prefix"])
def test_an_adapter_that_cannot_load_fails_alone_naming_its_source(fleet: Fleet, prefix: str) -> None:
    replica = [r["pid"] for r in fleet.server_replicas()]
    client = fleet.client(prefix)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=MISSING_ADAPTER, messages=PROMPT, max_tokens=2)
    message = str(err.value)
    assert MISSING_ADAPTER in message and MISSING_ADAPTER_SOURCE in message, message
    assert "Traceback" not in message and len(message) < 1000, message
    # The model and its other adapters keep answering, from the same replica.
    assert _reply(client, ADAPTERS[0])[0] == ADAPTERS[0]
    assert _reply(client, ALWAYS_ON)[0] == ALWAYS_ON
    assert [r["pid"] for r in fleet.server_replicas()] == replica


def test_models_lists_adapters_with_their_model_and_the_alias_with_its_targets(fleet: Fleet) -> None:
    cards = {card.id: card.model_dump() for card in fleet.client().models.list()}
    for adapter in ADAPTERS:
        assert cards[adapter]["parent"] == ALWAYS_ON
    assert cards[ALWAYS_ON]["parent"] is None
    assert {t["model"]: t["weight"] for t in cards[CANARY]["targets"]} == CANARY_WEIGHTS
    assert fleet.client().models.retrieve(ADAPTERS[1]).model_dump()["parent"] == ALWAYS_ON


def test_the_alias_splits_by_weight_and_keeps_a_user_on_one_target(fleet: Fleet) -> None:
    client = fleet.client()

    def target(user: str | None) -> str:
        extra = {"user": user} if user else {}
        reply = client.chat.completions.create(
            model=CANARY,
            messages=PROMPT,
            max_tokens=1,
            **extra,  # type: ignore[arg-type]
        )
        return reply.model

    sent = 400
    with ThreadPoolExecutor(16) as pool:
        counts = Counter(pool.map(target, [None] * sent))
    share = CANARY_WEIGHTS[ADAPTERS[0]] / sum(CANARY_WEIGHTS.values())
    mean, sd = sent * share, math.sqrt(sent * share * (1 - share))
    print(f"alias split over {sent}: {dict(counts)} (expected {ADAPTERS[0]} {mean:.0f} +- {sd:.1f})")
    assert set(counts) == set(CANARY_WEIGHTS)
    # Four standard deviations: a correct router fails this about once in 16,000 runs.
    assert abs(counts[ADAPTERS[0]] - mean) <= 4 * sd, counts

    users = [f"user-{i}" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        seen = {user: set(pool.map(target, [user] * 4)) for user in users}
    assert all(len(targets) == 1 for targets in seen.values()), seen
    # Stickiness keeps the split: 24 users land on both targets (all on one: p < 0.001).
    assert {next(iter(t)) for t in seen.values()} == set(CANARY_WEIGHTS), seen


def _served_per_replica(samples: Samples) -> Counter[str]:
    """Requests each of gamma's server replicas has handled (Serve's per-replica request counter)."""
    counts: Counter[str] = Counter()
    for (name, series), value in samples.items():
        labels = dict(series)
        if (
            name == "ray_serve_deployment_request_counter_total"
            and labels.get("application") == PREFIX_ROUTED
            and labels.get("deployment") == server_deployment_name(PREFIX_ROUTED)
        ):
            counts[labels["replica"]] += int(value)
    return counts


@pytest.mark.default_path_only
def test_requests_sharing_a_long_prefix_land_on_one_replica(fleet: Fleet) -> None:
    """On the fleet's endpoint. A model's prefix is routed without the body in high-throughput mode (HAProxy:
    forwarding it would hold slow clients past limits.bodyTimeoutSeconds), so prefix-aware routing applies
    there on the fleet's endpoint only; the standard path's prefixes are covered with the fake engine
    (tests/unit/test_serving_logic.py)."""
    assert fleet.replicas(PREFIX_ROUTED, server_deployment_name(PREFIX_ROUTED)) == (2, 2)
    client = fleet.client()
    shared = "You are the fleet's helpful assistant. " + "Models and replicas share a cluster. " * 12
    before = _served_per_replica(scrape(fleet))
    sent = 12
    for i in range(sent):  # one at a time: the replicas stay equally idle, so only the prefix decides
        messages = [{"role": "system", "content": shared}, {"role": "user", "content": f"Question {i}?"}]
        client.chat.completions.create(model=PREFIX_ROUTED, messages=messages, max_tokens=1)  # type: ignore[arg-type]

    def counted() -> Counter[str] | None:
        served = _served_per_replica(scrape(fleet))
        served.subtract(before)
        return served if sum(served.values()) >= sent else None

    started = time.monotonic()
    served = wait_for("gamma's request counters to show the requests", counted, timeout_s=90, every_s=2)
    print(
        f"per replica after {sent} requests sharing a prefix: {dict(served)}, "
        f"counted after {time.monotonic() - started:.0f}s"
    )
    assert max(served.values()) == sent, f"requests sharing a prefix were spread over replicas: {served}"
