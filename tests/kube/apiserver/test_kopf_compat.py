"""The acid test: a real kopf operator (`kopf run` subprocess) works against the emulator."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.kube.apiserver import ApiServer
from tests.kube.apiserver.test_apiserver import wait_for
from tests.kube.apiserver.widgets import CRD, GROUP, PLURAL, VERSION, widget

pytestmark = pytest.mark.kube

OPERATOR = f'''
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.posting.level = 0
    settings.watching.server_timeout = 10

@kopf.on.create("{GROUP}", "{VERSION}", "{PLURAL}")
def created(spec, patch, logger, **_):
    logger.info("widget created")
    patch.status["phase"] = "Ready"
    patch.status["message"] = "size " + spec["size"]

@kopf.on.delete("{GROUP}", "{VERSION}", "{PLURAL}")
def deleted(**_):
    pass
'''


@pytest.fixture(scope="module")
def custom(apiserver: ApiServer) -> Iterator[kubernetes.client.CustomObjectsApi]:
    client = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig_path))
    with client:
        kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(CRD)
        yield kubernetes.client.CustomObjectsApi(client)


@pytest.fixture
def operator(
    apiserver: ApiServer, custom: kubernetes.client.CustomObjectsApi, tmp_path: pathlib.Path
) -> Iterator[pathlib.Path]:
    del custom  # the CRD must exist before kopf scans the resources
    (tmp_path / "operator.py").write_text(OPERATOR, encoding="utf-8")
    log = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig_path)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--namespace=default",
                str(tmp_path / "operator.py"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _get(custom: kubernetes.client.CustomObjectsApi, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def test_kopf_create_handler_patches_status_and_finalizer_releases(
    operator: pathlib.Path, custom: kubernetes.client.CustomObjectsApi
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w-kopf", size="large"))

    def ready() -> dict[str, Any] | None:
        obj = _get(custom, "w-kopf")
        return obj if obj and obj.get("status", {}).get("phase") == "Ready" else None

    try:
        obj = wait_for(ready, "kopf to patch the status", deadline=30)
    except AssertionError:
        raise AssertionError(operator.read_text()) from None
    assert obj["status"]["message"] == "size large"
    assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert obj["metadata"]["generation"] == 1  # kopf's annotations and status did not bump it

    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w-kopf")
    wait_for(lambda: _get(custom, "w-kopf") is None, "kopf to release its finalizer", deadline=30)
