"""Semantic checks: what the CRD schema and CEL cannot express about a fleet.

Each check returns Problems naming the field, the value and the rule. The operator turns them into
`phase: Invalid`, `SpecValid=False` and an Event, and leaves a running RayService untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelfleet.api.problems import Problem
from modelfleet.api.quantity import parse_quantity
from modelfleet.api.v1alpha1 import ModelFleetSpec, ModelSpec, WorkerGroup

# engineArgs the fleet sets itself: the model path and the name clients use.
RESERVED_ENGINE_ARGS = {
    "model": "set by source",
    "served_model_name": "set by name",
    "tokenizer_pool_size": "unsupported by the vLLM V1 engine",
}
# engineArgs the fleet sets for a model with adapters (vLLM's LoRA support), and what sets them.
LORA_ENGINE_ARGS = {"enable_lora": "adapters", "max_loras": "maxAdaptersPerReplica"}
# vLLM's per-modality options in limit_mm_per_prompt (besides `count`), by modality; other modalities take
# `count` alone (vllm/config/multimodal.py: *DummyOptions).
MEDIA_LIMIT_OPTIONS = {
    "image": ("width", "height"),
    "video": ("num_frames", "width", "height"),
    "audio": ("length",),
}
# Share of a Ray node's memory Ray offers to tasks and actors (the rest backs the object store).
RAY_TASK_MEMORY_SHARE = 0.7


def _fits(model: ModelSpec, group: WorkerGroup) -> bool:
    """Could one replica of the model be scheduled on an (empty) worker of this group?"""
    if model.gpu_share > group.gpus_per_worker or model.cpus > group.cpus_per_worker:
        return False
    if model.memory is None:
        return True
    return float(parse_quantity(model.memory)) <= RAY_TASK_MEMORY_SHARE * float(
        parse_quantity(group.memory_per_worker)
    )


def _model_problems(spec: ModelFleetSpec, index: int, model: ModelSpec) -> Iterator[Problem]:
    path = f"spec.models[{index}]"
    gpus = model.gpu_share
    if gpus > 1 and not gpus.is_integer():
        yield Problem(
            f"{path}.gpus",
            model.gpus,
            "a share above 1 GPU must be a whole number (Ray schedules fractions only within one GPU)",
        )
    for key, why in sorted(RESERVED_ENGINE_ARGS.items()):
        if key in model.engine_args:
            yield Problem(f"{path}.engineArgs.{key}", model.engine_args[key], f"must not be set: {why}")
    utilisation = model.engine_args.get("gpu_memory_utilization")
    if (
        model.accelerator == "gpu"
        and isinstance(utilisation, int | float)
        and 0 < gpus < 1
        and utilisation > gpus
    ):
        yield Problem(
            f"{path}.engineArgs.gpu_memory_utilization",
            utilisation,
            f"must not exceed the model's GPU share ({gpus:g}): models sharing a GPU would run out of memory",
        )
    yield from _adapter_engine_problems(path, model)
    yield from _media_engine_problems(f"{path}.engineArgs", model.engine_args)
    parallel = 1
    for key in ("tensor_parallel_size", "pipeline_parallel_size"):
        size = model.engine_args.get(key, 1)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            yield Problem(f"{path}.engineArgs.{key}", size, "must be a whole number of at least 1")
            return
        parallel *= size
    if parallel > 1 and model.accelerator == "gpu" and gpus != parallel:
        yield Problem(
            f"{path}.gpus",
            model.gpus,
            f"must equal tensor_parallel_size x pipeline_parallel_size "
            f"({parallel}): each engine worker takes one whole GPU",
        )
    if model.accelerator == "gpu" and not any(group.gpus_per_worker > 0 for group in spec.workers):
        yield Problem(
            f"{path}.accelerator",
            model.accelerator,
            "needs a worker group with gpusPerWorker > 0 in spec.workers",
        )
    elif spec.workers and not any(_fits(model, group) for group in spec.workers):
        need = f"{gpus:g} GPU, {model.cpus:g} CPU" + (f", {model.memory} memory" if model.memory else "")
        yield Problem(
            path,
            model.name,
            f"one replica ({need}) fits no worker group in spec.workers "
            f"(memory counts at {RAY_TASK_MEMORY_SHARE:.0%} of memoryPerWorker)",
        )
    if not spec.workers:
        yield Problem("spec.workers", [], "at least one worker group is needed: the head runs no models")


def _adapter_engine_problems(path: str, model: ModelSpec) -> Iterator[Problem]:
    """vLLM's LoRA and prefix-caching engine args must agree with adapters and routing."""
    if model.adapters:
        for key, owner in LORA_ENGINE_ARGS.items():
            if key in model.engine_args:
                yield Problem(
                    f"{path}.engineArgs.{key}",
                    model.engine_args[key],
                    f"must not be set: the fleet sets it from {owner}",
                )
        cpu_loras = model.engine_args.get("max_cpu_loras")
        if isinstance(cpu_loras, int) and cpu_loras < model.max_adapters_per_replica:
            yield Problem(
                f"{path}.engineArgs.max_cpu_loras",
                cpu_loras,
                f"must be at least maxAdaptersPerReplica ({model.max_adapters_per_replica})",
            )
    elif model.engine_args.get("enable_lora"):
        yield Problem(
            f"{path}.engineArgs.enable_lora",
            model.engine_args["enable_lora"],
            "list the model's adapters in adapters instead: clients can only select adapters the fleet knows",
        )
    if model.routing == "prefixAware" and model.engine_args.get("enable_prefix_caching") is False:
        yield Problem(
            f"{path}.engineArgs.enable_prefix_caching",
            False,
            "must not be false with routing prefixAware (routing by prefix pays only with the cache)",
        )


def _media_engine_problems(path: str, engine_args: dict[str, Any]) -> Iterator[Problem]:
    """vLLM's multimodal engine args, in the shapes its config accepts (else the engine fails to start)."""
    limits = engine_args.get("limit_mm_per_prompt")
    if "limit_mm_per_prompt" in engine_args and not isinstance(limits, dict):
        yield Problem(
            f"{path}.limit_mm_per_prompt", limits, "must map a modality to a count, e.g. {image: 2, video: 0}"
        )
    for modality, limit in (limits or {}).items() if isinstance(limits, dict) else ():
        where = f"{path}.limit_mm_per_prompt.{modality}"
        if not isinstance(limit, dict):
            if not _whole(limit, at_least=0):
                yield Problem(where, limit, "must be a whole number of at least 0 (items per prompt)")
            continue
        options = MEDIA_LIMIT_OPTIONS.get(modality, ())
        for option, value in limit.items():
            if option == "count":
                if not _whole(value, at_least=0):
                    yield Problem(f"{where}.count", value, "must be a whole number of at least 0")
            elif option not in options:
                known = ", ".join(("count", *options))
                yield Problem(
                    f"{where}.{option}", value, f"is not an option of '{modality}' (known: {known})"
                )
            elif not _whole(value, at_least=1):
                yield Problem(f"{where}.{option}", value, "must be a whole number of at least 1")
    for key in ("mm_processor_kwargs", "media_io_kwargs"):
        if key in engine_args and not isinstance(engine_args[key], dict):
            yield Problem(f"{path}.{key}", engine_args[key], "must be a mapping")
    domains = engine_args.get("allowed_media_domains")
    if "allowed_media_domains" in engine_args and not (
        isinstance(domains, list) and all(isinstance(d, str) and d for d in domains)
    ):
        yield Problem(f"{path}.allowed_media_domains", domains, "must be a list of host names")


def _whole(value: Any, *, at_least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= at_least


def _name_problems(spec: ModelFleetSpec) -> Iterator[Problem]:
    """Models, adapters and aliases share one namespace: the `model` field of a request."""
    owners = {model.name: f"spec.models[{i}]" for i, model in enumerate(spec.models)}  # what serves a name
    for i, model in enumerate(spec.models):
        owner = f"spec.models[{i}].adapters"
        for j, adapter in enumerate(model.adapters):
            if owners.setdefault(adapter.name, owner) != owner:
                yield Problem(
                    f"{owner}[{j}].name",
                    adapter.name,
                    f"must be unique in the fleet: {owners[adapter.name]} has it",
                )
    known = ", ".join(sorted(owners))
    tasks = {model.name: model.task for model in spec.models} | dict.fromkeys(spec.adapter_bases, "generate")
    for i, alias in enumerate(spec.aliases):
        path = f"spec.aliases[{i}]"
        if alias.name in owners:
            yield Problem(
                f"{path}.name", alias.name, f"must be unique in the fleet: {owners[alias.name]} has it"
            )
        for j, target in enumerate(alias.targets):
            if target.model not in owners:  # aliases are not targets
                yield Problem(
                    f"{path}.targets[{j}].model",
                    target.model,
                    f"must name a model or adapter of the fleet ({known})",
                )
            elif tasks[target.model] != tasks[(first := alias.targets[0].model)]:
                yield Problem(
                    f"{path}.targets[{j}].model",
                    target.model,
                    f"must have the task of the alias's first target ({first}: {tasks[first]}), not "
                    f"{tasks[target.model]}: one alias answers one kind of request",
                )


def _capacity_problems(spec: ModelFleetSpec) -> Iterator[Problem]:
    """All models at their replica minimum must fit the GPUs the worker groups can ever have."""
    total_gpus = sum(group.gpus_per_worker * group.max_workers for group in spec.workers)
    wanted = sum(model.gpu_share * model.replicas.min for model in spec.models if model.accelerator == "gpu")
    if total_gpus and wanted > total_gpus:
        yield Problem(
            "spec.models",
            f"{wanted:g} GPUs",
            f"the models' minimum replicas need more GPUs than "
            f"the worker groups provide at maxWorkers ({total_gpus})",
        )


def check(spec: ModelFleetSpec) -> list[Problem]:
    """Every semantic problem of a fleet spec, in field order; empty when it is sound."""
    problems: list[Problem] = []
    for index, model in enumerate(spec.models):
        problems.extend(_model_problems(spec, index, model))
    problems.extend(_name_problems(spec))
    problems.extend(_capacity_problems(spec))
    # One missing-workers problem is enough, however many models hit it.
    unique: list[Problem] = []
    for problem in problems:
        if problem not in unique:
            unique.append(problem)
    return unique
