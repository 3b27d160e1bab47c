"""The serving path's Prometheus metrics, scraped from the local Ray node's metrics port after real
requests and a real wake from zero, and the Grafana dashboard checked against what a fleet exports."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import openai
import pytest

from modelfleet.localray import wait_for
from modelfleet_contract.wire import ROUTER_APP_NAME
from serving_app.server import server_deployment_name
from tests.serving.fleetspec import ALWAYS_ON, SLEEPY, Fleet
from tests.support import prometheus
from tests.support.prometheus import Samples, total

pytestmark = pytest.mark.serving
DASHBOARD = Path(__file__).parents[2] / "dashboards" / "modelfleet.json"
CHAT = [{"role": "user", "content": "Say hello"}]
# Ray's metrics agent exports what processes recorded every 10 s (metrics_report_interval_ms).
REPORT_INTERVAL_S = 10


def scrape(fleet: Fleet) -> Samples:
    url = fleet.local.head.metrics_url
    assert url, "the local head records its metrics port"
    return prometheus.scrape(url)


def ours(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if k[0].startswith("ray_modelfleet_")}


def settled(fleet: Fleet) -> Samples:
    """Our series once no earlier test's traffic is still on its way to the exporter."""
    last: list[Samples] = [{}]
    since = [time.monotonic()]

    def unchanged_for_a_report() -> Samples | None:
        now = ours(scrape(fleet))
        if now != last[0]:
            last[0], since[0] = now, time.monotonic()
        return now if time.monotonic() - since[0] > REPORT_INTERVAL_S + 1 else None

    found: Samples = wait_for("metrics to settle", unchanged_for_a_report, timeout_s=120, every_s=1)
    return found


def _at_zero(fleet: Fleet) -> bool:
    return bool(fleet.replicas(SLEEPY, server_deployment_name(SLEEPY)) == (0, 0))


# (sample name, labels) -> by how much the traffic below moves it.
EXPECTED: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
    ("ray_modelfleet_requests_total", (("model", ALWAYS_ON), ("endpoint", "unified"), ("code", "200"))): 2,
    ("ray_modelfleet_requests_total", (("model", ALWAYS_ON), ("endpoint", "prefix"), ("code", "200"))): 2,
    ("ray_modelfleet_requests_total", (("model", ALWAYS_ON), ("endpoint", "infer"), ("code", "200"))): 1,
    ("ray_modelfleet_requests_total", (("model", SLEEPY), ("endpoint", "unified"), ("code", "200"))): 1,
    ("ray_modelfleet_requests_total", (("model", ""), ("endpoint", "unified"), ("code", "404"))): 1,
    ("ray_modelfleet_requests_total", (("model", ""), ("endpoint", "unified"), ("code", "401"))): 1,
    ("ray_modelfleet_router_errors_total", (("endpoint", "unified"), ("reason", "unknown_model"))): 1,
    ("ray_modelfleet_router_errors_total", (("endpoint", "unified"), ("reason", "unauthorized"))): 1,
    ("ray_modelfleet_time_to_first_token_seconds_count", (("model", ALWAYS_ON), ("endpoint", "prefix"))): 2,
    ("ray_modelfleet_time_to_first_token_seconds_count", (("model", SLEEPY), ("endpoint", "unified"))): 1,
    ("ray_modelfleet_time_to_first_token_seconds_count", (("model", ALWAYS_ON), ("endpoint", "unified"))): 0,
    ("ray_modelfleet_wakes_total", (("model", SLEEPY),)): 1,
    ("ray_modelfleet_wake_duration_seconds_count", (("model", SLEEPY),)): 1,
}


# In high-throughput mode HAProxy refuses the request without a valid key itself (no key, no wake:
# serving_app/haproxy.py): no front door sees it, so none counts it.
REFUSED_BY_HAPROXY = {
    ("ray_modelfleet_requests_total", (("model", ""), ("endpoint", "unified"), ("code", "401"))),
    ("ray_modelfleet_router_errors_total", (("endpoint", "unified"), ("reason", "unauthorized"))),
}


def expected(fleet: Fleet) -> dict[str, float]:
    return {
        f"{name}{dict(labels)}": 0.0
        if fleet.high_throughput and (name, labels) in REFUSED_BY_HAPROXY
        else float(v)
        for (name, labels), v in EXPECTED.items()
    }


def deltas(before: Samples, after: Samples) -> dict[str, float]:
    return {
        f"{name}{dict(labels)}": total(after, name, **dict(labels)) - total(before, name, **dict(labels))
        for name, labels in EXPECTED
    }


def send_traffic(fleet: Fleet) -> float:
    """The requests EXPECTED accounts for; returns the wake's time to first token."""
    unified, prefix = fleet.client(), fleet.client(f"/{ALWAYS_ON}")
    for _ in range(2):
        unified.chat.completions.create(model=ALWAYS_ON, messages=CHAT, max_tokens=4)  # type: ignore[arg-type]
        list(
            prefix.chat.completions.create(
                model=ALWAYS_ON,
                messages=CHAT,  # type: ignore[arg-type]
                max_tokens=4,
                stream=True,
            )
        )
    resp = fleet.infer(ALWAYS_ON, max_tokens=3)
    assert resp.status_code == 200, resp.text
    with pytest.raises(openai.NotFoundError):
        unified.chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=2)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        fleet.client(api_key="wrong-key").chat.completions.create(
            model=ALWAYS_ON,
            messages=CHAT,  # type: ignore[arg-type]
            max_tokens=2,
        )
    # The unified endpoint's wake from zero: one streamed request that must succeed.
    started = time.monotonic()
    list(unified.chat.completions.create(model=SLEEPY, messages=CHAT, max_tokens=2, stream=True))  # type: ignore[arg-type]
    return time.monotonic() - started


def test_requests_and_a_wake_move_the_counters_by_the_right_amounts(fleet: Fleet) -> None:
    wait_for(f"{SLEEPY} at zero replicas", lambda: _at_zero(fleet), timeout_s=120, every_s=1)
    before = settled(fleet)
    wake_s = send_traffic(fleet)
    want = expected(fleet)
    got: dict[str, float] = {}

    def counted() -> bool:
        got.update(deltas(before, scrape(fleet)))
        return got == want

    try:
        wait_for("the counters to move", counted, timeout_s=REPORT_INTERVAL_S * 6, every_s=1)
    except TimeoutError:
        wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        pytest.fail(f"metric deltas (got, want) that differ: {json.dumps(wrong, indent=1)}")
    after = scrape(fleet)
    low, high = wake_bucket(before, after)
    print(f"wake: first token after {wake_s:.1f}s, wake duration recorded in ({low}, {high}] s")
    # The recorded wake is the part of the client's wait spent with no replica running. (Ray exports a
    # histogram's _sum from bucket midpoints, so the bucket is what can be checked.)
    assert low < wake_s
    for model in (ALWAYS_ON, SLEEPY):
        waiting = total(after, "ray_modelfleet_requests_waiting", model=model)
        assert waiting == 0, f"{model}: {waiting} requests still counted as waiting"


def test_serves_own_http_metrics_show_which_application_took_the_fleet_endpoints_requests(
    fleet: Fleet,
) -> None:
    """In high-throughput mode `modelfleet up`'s HAProxy sends the fleet endpoint's requests for a model to
    the model's application itself (serving_app/haproxy.py: no router hop), its `/v1/models` to the router;
    on the standard path the router application takes both. Serve's own per-application HTTP counter says
    so."""
    settled(fleet)
    name = "ray_serve_num_http_requests_total"
    before = scrape(fleet)
    client, chats = fleet.client(), 3
    for _ in range(chats):
        client.chat.completions.create(model=ALWAYS_ON, messages=CHAT, max_tokens=2)  # type: ignore[arg-type]
    assert ALWAYS_ON in {m.id for m in client.models.list()}
    want = {ROUTER_APP_NAME: 1.0, ALWAYS_ON: float(chats)}
    if not fleet.high_throughput:
        want = {ROUTER_APP_NAME: float(chats + 1), ALWAYS_ON: 0.0}
    got: dict[str, float] = {}

    def counted() -> bool:
        after = scrape(fleet)
        got.update(
            {app: total(after, name, application=app) - total(before, name, application=app) for app in want}
        )
        return got == want

    try:
        wait_for("Serve's HTTP counters to move", counted, timeout_s=REPORT_INTERVAL_S * 6, every_s=1)
    except TimeoutError:
        pytest.fail(f"requests by application: got {got}, want {want}")


def wake_bucket(before: Samples, after: Samples) -> tuple[float, float]:
    """The (lower, upper] bounds of the wake-duration bucket the one wake between the scrapes fell in."""
    name = "ray_modelfleet_wake_duration_seconds_bucket"
    bounds = sorted({float(dict(labels)["le"]) for sample, labels in after if sample == name})
    low = 0.0
    for le in bounds:
        le_text = "+Inf" if le == float("inf") else repr(le)
        moved = total(after, name, model=SLEEPY, le=le_text) - total(before, name, model=SLEEPY, le=le_text)
        if moved:
            return low, le
        low = le
    raise AssertionError("no wake-duration bucket moved")


def dashboard_queries() -> Iterator[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("expr", "query") and isinstance(value, str):
                    yield value
                elif isinstance(value, Mapping) and key == "query" and "query" in value:
                    yield str(value["query"])
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    yield from walk(json.loads(DASHBOARD.read_text()))


SELECTOR = re.compile(r"\b(ray_[A-Za-z0-9_:]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\bby \(([^)]*)\) \((?:\w+\()?(ray_[A-Za-z0-9_:]+)")
# Added by the PodMonitor's relabelling in a cluster (docs/install.md), absent from a local scrape.
TARGET_LABELS = {"fleet"}


def dashboard_labels() -> dict[str, set[str]]:
    """Metric name -> the label names the dashboard's queries select or group it by."""
    used: dict[str, set[str]] = {}
    for query in dashboard_queries():
        for name, matchers in SELECTOR.findall(query):
            used.setdefault(name, set()).update(MATCHER.findall(matchers))
        for grouping, name in GROUPING.findall(query):
            used.setdefault(name, set()).update(g.strip() for g in grouping.split(","))
    return used


def exported_labels(fleet: Fleet) -> dict[str, set[str]]:
    exported: dict[str, set[str]] = {}
    for name, series in scrape(fleet):
        exported.setdefault(name, set()).update(label for label, _ in series)
    return exported


def test_the_dashboard_queries_only_metrics_and_labels_a_running_fleet_exports(fleet: Fleet) -> None:
    """Runs after the test above in the same fleet (pytest keeps file order), which woke a model.

    Ray drops a gauge from the scrape ~2 report intervals after its process last set it (vLLM sets its
    engine gauges while it works), so the fleet is kept busy until every queried series is there."""
    used = dashboard_labels()
    assert len(used) >= 10, used
    client = fleet.client()
    exported: dict[str, set[str]] = {}

    def all_there() -> bool:
        client.chat.completions.create(model=ALWAYS_ON, messages=CHAT, max_tokens=2)  # type: ignore[arg-type]
        for name, labels in exported_labels(fleet).items():
            exported.setdefault(name, set()).update(labels)
        return set(used) <= set(exported)

    with contextlib.suppress(TimeoutError):
        wait_for("the dashboard's metrics", all_there, timeout_s=REPORT_INTERVAL_S * 6, every_s=1)
    missing = sorted(set(used) - set(exported))
    assert not missing, f"dashboards/modelfleet.json queries metrics no fleet exports: {missing}"
    unknown = {
        name: sorted(labels - exported[name] - TARGET_LABELS)
        for name, labels in used.items()
        if labels - exported[name] - TARGET_LABELS
    }
    assert not unknown, f"dashboards/modelfleet.json uses labels these metrics do not have: {unknown}"
