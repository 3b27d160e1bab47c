"""`modelfleet import`: a Ray Serve LLM config becomes a valid ModelFleet, and what is lost is said."""

from __future__ import annotations

import subprocess
import sys

import yaml

from modelfleet import yamlio
from modelfleet.api.validation import validate_fleet
from modelfleet.migrate import import_serve_config
from tests.unit.conftest import HERE

SOURCE = HERE / "data" / "serve-llm.yaml"


def test_import_carries_gpu_share_cpus_autoscaling_and_engine_args() -> None:
    migration = import_serve_config(yamlio.load_file(SOURCE)[0], name="imported", namespace="llm")
    fleet, problems = validate_fleet(migration.fleet)
    assert problems == [] and fleet is not None
    qwen, smol, _ = fleet.spec.models
    assert (qwen.name, qwen.source, qwen.gpus, qwen.cpus) == (
        "qwen-0-5b",
        "Qwen/Qwen2.5-0.5B-Instruct",
        0.45,
        2.0,
    )
    assert (qwen.replicas.min, qwen.replicas.max, qwen.replicas.target_ongoing_requests) == (0, 3, 8)
    assert (qwen.replicas.max_ongoing_requests, qwen.replicas.downscale_delay_seconds) == (32, 120)
    assert qwen.engine_args == {"max_model_len": 4096, "gpu_memory_utilization": 0.4}
    assert (smol.gpus, smol.cpus, smol.replicas.min, smol.replicas.max) == (0.45, 1.0, 1, 2)
    assert [(w.name, w.gpus_per_worker, w.min_workers) for w in fleet.spec.workers] == [("gpu", 1, 0)]


def test_import_reports_every_field_it_could_not_carry() -> None:
    migration = import_serve_config(yamlio.load_file(SOURCE)[0], name="imported")
    dropped = "\n".join(migration.dropped)
    assert "applications[0].args.llm_configs[0].runtime_env" in dropped
    assert "applications[0].args.llm_configs[0].accelerator_type" in dropped
    assert "applications[0].args.llm_configs[3] (a file reference" in dropped


def test_import_carries_the_adapter_bound_and_the_router_and_names_the_bucket() -> None:
    migration = import_serve_config(yamlio.load_file(SOURCE)[0], name="imported")
    fleet, problems = validate_fleet(migration.fleet)
    assert problems == [] and fleet is not None
    llama = fleet.spec.models[2]
    assert (llama.routing, llama.max_adapters_per_replica) == ("prefixAware", 4)
    assert llama.engine_args == {"max_lora_rank": 32}  # enable_lora and max_loras are the fleet's to set
    # Ray Serve LLM lists a bucket's adapters at request time; a fleet names each one, so the user is told.
    dropped = "\n".join(migration.dropped)
    assert "llm_configs[2].lora_config.dynamic_lora_loading_path 's3://acme-adapters/llama'" in dropped
    assert "models[].adapters" in dropped


def test_import_command_prints_a_fleet_and_the_losses() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.cli", "import", str(SOURCE), "--name", "chat"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fleet = yaml.safe_load(result.stdout)
    assert fleet["kind"] == "ModelFleet" and fleet["metadata"]["name"] == "chat"
    assert "not carried: applications[0].args.llm_configs[0].runtime_env" in result.stderr
