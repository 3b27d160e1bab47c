"""Where `modelfleet up` finds a fleet's API keys: --secrets-dir (the layout Kubernetes mounts), or
MODELFLEET_API_KEY for a single key. A missing key is an error naming it, before Ray starts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from modelfleet import local
from modelfleet.api.v1alpha1 import ModelFleet
from tests.unit.conftest import HERE, load_fleet


def fleet(*keys: tuple[str, str]) -> ModelFleet:
    document = load_fleet(HERE / "cases" / "cpu-only.yaml").model_dump(by_alias=True, exclude_none=True)
    document["spec"]["apiKeys"] = [{"secretName": s, "key": k} for s, k in keys]
    return ModelFleet.model_validate(document)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(local, "STATE_DIR", tmp_path / "state")
    monkeypatch.delenv(local.API_KEY_ENV, raising=False)
    return tmp_path / "state"


def test_a_secrets_dir_is_used_as_it_is(tmp_path: Path) -> None:
    for name in ("keys/a", "team/b"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    assert local.keys_dir(fleet(("keys", "a"), ("team", "b")), str(tmp_path)) == tmp_path


def test_a_secrets_dir_missing_a_key_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "a").write_text("x")
    with pytest.raises(local.LocalError, match=r"no file for the API key\(s\) team/b$"):
        local.keys_dir(fleet(("keys", "a"), ("team", "b")), str(tmp_path))


def test_one_key_can_come_from_the_environment_into_a_private_file(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(local.API_KEY_ENV, "s3cret")
    directory = local.keys_dir(fleet(("keys", "a")), None)
    assert directory is not None and directory.parent == state_dir
    assert (directory / "keys" / "a").read_text() == "s3cret"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "keys" / "a").stat().st_mode) == 0o600


def test_several_keys_need_a_secrets_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local.API_KEY_ENV, "s3cret")
    with pytest.raises(local.LocalError, match="--secrets-dir") as error:
        local.keys_dir(fleet(("keys", "a"), ("keys", "b")), None)
    assert "keys/a, keys/b" in str(error.value) and "s3cret" not in str(error.value)


def test_a_fleet_without_keys_needs_none() -> None:
    assert local.keys_dir(fleet(), None) is None
