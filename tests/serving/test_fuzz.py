"""A fuzz pass on the front door: generated requests, valid and not, to every inference endpoint of a running
fleet (both data paths). Whatever a client sends, the answer is never a 5xx and no model replica restarts.

Hypothesis drives the generator (`derandomize`: the same cases every run, so CI is reproducible; a failure
prints the minimal body that caused it). Bounded: MAX_EXAMPLES requests per endpoint and data path."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.fleetspec import ALWAYS_ON, API_KEY, Fleet
from tests.serving.test_front_door import replica_pids

MAX_EXAMPLES = 60

# Values of the wrong type, of the right type but out of range, and plausible ones.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
small_ints = st.integers(min_value=-3, max_value=40)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times in four, junk otherwise: most requests get past validation to the engine."""
    return st.one_of(good, good, good, junk)


# The sleeping and the broken model are left out: a wake costs a minute here, and what the broken model
# answers is tests/serving/test_fleet_serving.py's.
model = st.one_of(
    st.just(ALWAYS_ON), st.just(ALWAYS_ON), st.sampled_from(["", "gpt-4", "alpha/../beta", "ALPHA"]), junk
)
content = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url", "x"]), "text": st.text(max_size=20)}
        ),
        max_size=2,
    ),
    junk,
)
message = st.fixed_dictionaries(
    {"role": mostly(st.sampled_from(["user", "system", "assistant", "tool", "developer"]))},
    optional={"content": content, "name": st.text(max_size=8), "tool_call_id": junk},
)
sampling = {
    "max_tokens": mostly(small_ints),
    "max_completion_tokens": mostly(small_ints),
    "n": st.one_of(st.integers(min_value=-1, max_value=3), junk),
    "temperature": mostly(st.floats(min_value=-1, max_value=3, allow_nan=False)),
    "top_p": mostly(st.floats(min_value=-0.5, max_value=1.5, allow_nan=False)),
    "top_k": mostly(small_ints),
    "seed": st.one_of(st.integers(), junk),
    "stop": st.one_of(st.text(max_size=4), st.lists(st.text(max_size=4), max_size=3), junk),
    "stream": mostly(st.booleans()),
    "logprobs": st.one_of(st.booleans(), small_ints, junk),
    "presence_penalty": st.one_of(st.floats(min_value=-3, max_value=3, allow_nan=False), junk),
    "frequency_penalty": st.one_of(st.floats(min_value=-3, max_value=3, allow_nan=False), junk),
    "unknown_field": junk,
}
chat_body = st.fixed_dictionaries(
    {"model": model, "messages": mostly(st.lists(message, max_size=3))}, optional=sampling
)
completion_body = st.fixed_dictionaries(
    {
        "model": model,
        "prompt": st.one_of(st.text(max_size=60), st.lists(st.integers(0, 300), max_size=8), junk),
    },
    optional=sampling,
)
infer_body = st.fixed_dictionaries(
    {"model_id": model, "input": mostly(st.text(max_size=60))},
    optional={"params": mostly(st.fixed_dictionaries({}, optional=sampling))},
)
# Bodies that are not a JSON object at all.
not_an_object = st.one_of(st.binary(max_size=40), junk.map(lambda v: json.dumps(v).encode()))

ENDPOINTS = {
    "chat": ("/v1/chat/completions", chat_body),
    "completions": ("/v1/completions", completion_body),
    "infer": ("/v1/infer", infer_body),
    "prefix-chat": (f"/{ALWAYS_ON}/v1/chat/completions", chat_body),
}


def send(client: httpx.Client, url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    return client.post(url, content=content, headers=headers)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_no_request_gets_a_5xx_or_restarts_a_replica(fleet: Fleet, endpoint: str) -> None:
    path, bodies = ENDPOINTS[endpoint]
    url = f"{fleet.url}{path}"
    before = replica_pids(fleet)
    seen: dict[int, int] = {}
    server_errors: list[str] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(body=st.one_of(bodies, bodies, bodies, not_an_object))
    def one(body: Any) -> None:
        reply = send(client, url, body)
        seen[reply.status_code] = seen.get(reply.status_code, 0) + 1
        if reply.status_code >= 500:
            server_errors.append(f"{reply.status_code} {reply.text[:200]!r} for {str(body)[:300]}")

    with httpx.Client(timeout=120) as client:
        one()
    print(f"\nfuzz {endpoint}: statuses {dict(sorted(seen.items()))}")
    assert not server_errors, "\n".join(server_errors[:10])
    assert replica_pids(fleet) == before, "a generated request restarted a replica"
