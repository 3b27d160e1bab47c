"""Semantic checks: what the CRD schema and CEL cannot express about a fleet.

Each check returns Problems naming the field, the value and the rule. The operator turns them into
`phase: Invalid`, `SpecValid=False` and an Event, and leaves a running RayService untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

from modelfleet.api.problems import Problem
from modelfleet.api.quantity import parse_quantity
from modelfleet.api.v1alpha1 import ModelFleetSpec, ModelSpec, WorkerGroup

# engineArgs the fleet sets itself: the model path and the name clients use.
RESERVED_ENGINE_ARGS = {
    "model": "set by source",
    "served_model_name": "set by name",
    "tokenizer_pool_size": "unsupported by the vLLM V1 engine",
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
    problems.extend(_capacity_problems(spec))
    # One missing-workers problem is enough, however many models hit it.
    unique: list[Problem] = []
    for problem in problems:
        if problem not in unique:
            unique.append(problem)
    return unique
