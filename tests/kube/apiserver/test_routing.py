"""The emulator's request routing: kmock's reactions, tried as kmock tries them, decided faster."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import EllipsisType

import httpx
import kmock
import pytest
from kmock._internal import enums, filtering

from tests.kube.apiserver import ApiServer, running_apiserver
from tests.kube.apiserver.emulator import _admits

METHODS = [*enums.method, enums.method("PROPFIND")]  # and an unknown one, as kmock makes it
ACTIONS = [*enums.action, None]


@pytest.mark.parametrize("pattern", [*enums.method, enums.method("PROPFIND")])
@pytest.mark.parametrize("path", [..., "/api", "/apis/*", re.compile(r"/apis/[^/]+")])
def test_method_and_path_criteria_decide_as_kmock_does(
    pattern: enums.method, path: re.Pattern[str] | str | EllipsisType
) -> None:
    criteria = filtering.HTTPCriteria(method=pattern, path=path)
    for method in METHODS:
        for url in ("/api", "/apis/ray.io", "/apis/ray.io/v1/rayservices"):
            request = kmock.Request(method=method, url=url)
            assert _admits(criteria, request) == criteria(request), (method, url)


@pytest.mark.parametrize("pattern", list(enums.action))
def test_action_criteria_decide_as_kmock_does(pattern: enums.action) -> None:
    criteria = filtering.K8sCriteria(action=pattern)
    for action in ACTIONS:
        request = kmock.Request(method="GET", url="/api/v1/pods", action=action)
        assert _admits(criteria, request) == criteria(request), action


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    with running_apiserver(kuberay=False) as running:
        yield running


def _inject(server: ApiServer, inject: object) -> None:
    assert server.emulator is not None
    server.call(inject, server.emulator)


def test_injected_reactions_take_priority_and_slices_still_count(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/v1/namespaces/default").status_code == 200
        _inject(server, lambda emulator: emulator["get /api/v1/namespaces/kube-public"] << 503)
        _inject(server, lambda emulator: emulator["get /version"][:1] << 418)
        _inject(server, lambda emulator: emulator[kmock.action.LIST, kmock.resource("", "v1", "pods")] << 500)
        assert client.get("/api/v1/namespaces/kube-public").status_code == 503
        assert client.get("/api/v1/namespaces/default").status_code == 200
        assert client.get("/version").status_code == 418
        assert client.get("/version").status_code == 200  # the slice saw its one request
        assert client.get("/api/v1/namespaces/default/pods").status_code == 500
        assert client.get("/api/v1/namespaces/default/configmaps").status_code == 200
