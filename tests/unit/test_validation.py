"""A table of invalid fleets: each names the field its error must point at, and the layer that catches it.

Layer "schema" and "cel" cases must also be refused by the API server's view of our CRD (structural schema
+ CEL rules evaluated with cel-python), at the same field; "semantic" cases pass the CRD and are caught by
the operator's checks. So the offline `modelfleet validate`, the API server and the operator agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.api.crd import build_crd
from modelfleet.api.validation import validate_fleet
from tests.support.crd_validation import validate as apiserver_validate

Doc = dict[str, Any]


def base() -> Doc:
    return {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": "chat", "namespace": "llm"},
        "spec": {
            "models": [
                {"name": "a", "source": "org/a", "gpus": 0.45, "engineArgs": {"max_model_len": 4096}},
                {"name": "b", "source": "org/b", "gpus": 0.45},
            ],
            "workers": [
                {
                    "name": "gpu",
                    "gpusPerWorker": 1,
                    "cpusPerWorker": 8,
                    "memoryPerWorker": "32Gi",
                    "minWorkers": 0,
                    "maxWorkers": 2,
                },
            ],
        },
    }


def model(index: int, **fields: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["spec"]["models"][index].update(fields)

    return change


def replicas(**fields: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["spec"]["models"][0].setdefault("replicas", {}).update(fields)

    return change


def worker(**fields: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["spec"]["workers"][0].update(fields)

    return change


def spec(**fields: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["spec"].update(fields)

    return change


def engine(**fields: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["spec"]["models"][0]["engineArgs"].update(fields)

    return change


def drop(*path: str | int) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return change


def metadata_name(name: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["metadata"]["name"] = name

    return change


# (id, change, field the error names, layer)
CASES: list[tuple[str, Callable[[Doc], None], str, str]] = [
    ("name-uppercase", metadata_name("Chat"), "metadata.name", "schema"),
    ("name-too-long", metadata_name("a" * 48), "metadata.name", "schema"),
    ("kind-wrong", lambda d: d.update(kind="ModelFleets"), "kind", "schema"),
    ("spec-missing", drop("spec"), "spec", "schema"),
    ("no-models", spec(models=[]), "spec.models", "schema"),
    ("model-name-not-dns", model(0, name="Qwen_7B"), "spec.models[0].name", "schema"),
    ("model-name-reserved", model(0, name="v1"), "spec.models[0].name", "cel"),
    ("model-name-router", model(1, name="fleet"), "spec.models[1].name", "cel"),
    ("model-names-repeat", model(1, name="a"), "spec.models", "cel"),
    ("source-empty", model(0, source=""), "spec.models[0].source", "schema"),
    ("source-missing", drop("spec", "models", 0, "source"), "spec.models[0].source", "schema"),
    ("task-unknown", model(0, task="chat"), "spec.models[0].task", "schema"),
    ("accelerator-unknown", model(0, accelerator="tpu"), "spec.models[0].accelerator", "schema"),
    ("gpus-negative", model(0, gpus=-1), "spec.models[0].gpus", "schema"),
    ("gpus-on-cpu", model(0, accelerator="cpu"), "spec.models[0].gpus", "cel"),
    ("gpus-zero-on-gpu", model(0, gpus=0), "spec.models[0].gpus", "cel"),
    ("gpus-beyond-any-worker", model(0, gpus=2), "spec.models", "cel"),
    ("cpus-zero", model(0, cpus=0), "spec.models[0].cpus", "schema"),
    ("memory-not-quantity", model(0, memory="8 GB"), "spec.models[0].memory", "schema"),
    ("replicas-min-negative", replicas(min=-1), "spec.models[0].replicas.min", "schema"),
    ("replicas-min-above-max", replicas(min=3, max=2), "spec.models[0].replicas.min", "cel"),
    ("replicas-max-zero", replicas(min=0, max=0), "spec.models[0].replicas.max", "schema"),
    # The CRD stores no defaults inside list items (GitOps: see modelfleet.api.crd); CEL must read an
    # absent field as its default: max defaults to 1, maxOngoingRequests to 64, accelerator to gpu.
    ("replicas-min-above-default-max", replicas(min=2), "spec.models[0].replicas.min", "cel"),
    (
        "target-ongoing-above-default-max",
        replicas(targetOngoingRequests=100),
        "spec.models[0].replicas.maxOngoingRequests",
        "cel",
    ),
    ("gpus-zero-on-default-accelerator", model(1, gpus=0), "spec.models[1].gpus", "cel"),
    (
        "min-workers-above-default-max",
        lambda d: d["spec"]["workers"][0].pop("maxWorkers") and d["spec"]["workers"][0].update(minWorkers=5),
        "spec.workers[0].minWorkers",
        "cel",
    ),
    (
        "max-ongoing-below-target",
        replicas(targetOngoingRequests=16, maxOngoingRequests=4),
        "spec.models[0].replicas.maxOngoingRequests",
        "cel",
    ),
    (
        "downscale-delay-negative",
        replicas(downscaleDelaySeconds=-5),
        "spec.models[0].replicas.downscaleDelaySeconds",
        "schema",
    ),
    ("replicas-not-integer", replicas(max="two"), "spec.models[0].replicas.max", "schema"),
    ("engine-args-not-object", model(0, engineArgs=["enforce_eager"]), "spec.models[0].engineArgs", "schema"),
    (
        "worker-names-repeat",
        lambda d: d["spec"]["workers"].append(dict(d["spec"]["workers"][0])),
        "spec.workers",
        "cel",
    ),
    ("workers-min-above-max", worker(minWorkers=3, maxWorkers=2), "spec.workers[0].minWorkers", "cel"),
    ("worker-gpus-negative", worker(gpusPerWorker=-1), "spec.workers[0].gpusPerWorker", "schema"),
    (
        "worker-memory-not-quantity",
        worker(memoryPerWorker="lots"),
        "spec.workers[0].memoryPerWorker",
        "schema",
    ),
    ("worker-name-not-dns", worker(name="GPU pool"), "spec.workers[0].name", "schema"),
    (
        "toleration-operator",
        worker(tolerations=[{"key": "spot", "operator": "Maybe"}]),
        "spec.workers[0].tolerations[0].operator",
        "schema",
    ),
    ("upgrade-strategy-unknown", spec(upgradeStrategy="Rolling"), "spec.upgradeStrategy", "schema"),
    ("api-key-without-key", spec(apiKey={"secretName": "keys"}), "spec.apiKey.key", "schema"),
    ("hf-token-inline-value", spec(huggingFaceToken="hf_abc"), "spec.huggingFaceToken", "schema"),
    (
        "cache-relative-path",
        spec(modelCache={"claimName": "m", "mountPath": "models"}),
        "spec.modelCache.mountPath",
        "schema",
    ),
    ("head-cpus-zero", spec(head={"cpus": 0}), "spec.head.cpus", "schema"),
    (
        "gpus-fraction-above-one",
        lambda d: (model(0, gpus=1.5)(d), worker(gpusPerWorker=2)(d)),
        "spec.models[0].gpus",
        "semantic",
    ),
    (
        "gpu-memory-above-share",
        engine(gpu_memory_utilization=0.9),
        "spec.models[0].engineArgs.gpu_memory_utilization",
        "semantic",
    ),
    (
        "engine-model-overrides-source",
        engine(model="org/other"),
        "spec.models[0].engineArgs.model",
        "semantic",
    ),
    (
        "engine-served-name",
        engine(served_model_name="x"),
        "spec.models[0].engineArgs.served_model_name",
        "semantic",
    ),
    (
        "api-keys-duplicate",
        spec(apiKeys=[{"secretName": "k", "key": "a"}, {"secretName": "k", "key": "a"}]),
        "spec.apiKeys",
        "cel",
    ),
    (
        "api-key-bad-secret-name",
        spec(apiKeys=[{"secretName": "Keys!", "key": "a"}]),
        "spec.apiKeys[0].secretName",
        "schema",
    ),
    ("api-key-dotdot-key", spec(apiKey={"secretName": "keys", "key": "../etc"}), "spec.apiKey.key", "schema"),
    ("network-peer-empty", spec(networkPolicy={"allowFrom": [{}]}), "spec.networkPolicy.allowFrom[0]", "cel"),
    (
        "network-peer-in-without-values",
        spec(
            networkPolicy={
                "metricsFrom": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]
            }
        ),
        "spec.networkPolicy.metricsFrom[0].podSelector.matchExpressions[0].values",
        "cel",
    ),
    ("limits-tiny-body", spec(limits={"maxRequestBytes": 10}), "spec.limits.maxRequestBytes", "schema"),
    (
        "limits-zero-timeout",
        spec(limits={"bodyTimeoutSeconds": 0}),
        "spec.limits.bodyTimeoutSeconds",
        "schema",
    ),
    (
        "adapter-name-not-dns",
        model(0, adapters=[{"name": "Fine_Tune", "source": "o/f"}]),
        "spec.models[0].adapters[0].name",
        "schema",
    ),
    (
        "adapter-without-source",
        model(0, adapters=[{"name": "ft"}]),
        "spec.models[0].adapters[0].source",
        "schema",
    ),
    (
        "adapters-repeat-in-model",
        model(0, adapters=[{"name": "ft", "source": "o/f"}, {"name": "ft", "source": "o/g"}]),
        "spec.models[0].adapters",
        "cel",
    ),
    (
        "adapters-on-embed-model",
        model(0, task="embed", adapters=[{"name": "ft", "source": "o/f"}]),
        "spec.models[0].adapters",
        "cel",
    ),
    (
        "adapters-per-replica-zero",
        model(0, maxAdaptersPerReplica=0),
        "spec.models[0].maxAdaptersPerReplica",
        "schema",
    ),
    ("routing-unknown", model(0, routing="leastLoaded"), "spec.models[0].routing", "schema"),
    (
        "adapter-named-like-a-model",
        model(0, adapters=[{"name": "b", "source": "o/f"}]),
        "spec.models[0].adapters[0].name",
        "semantic",
    ),
    (
        "adapter-in-two-models",
        lambda d: (
            model(0, adapters=[{"name": "ft", "source": "o/f"}])(d),
            model(1, adapters=[{"name": "ft", "source": "o/g"}])(d),
        ),
        "spec.models[1].adapters[0].name",
        "semantic",
    ),
    (
        "adapters-with-engine-max-loras",
        lambda d: (model(0, adapters=[{"name": "ft", "source": "o/f"}])(d), engine(max_loras=8)(d)),
        "spec.models[0].engineArgs.max_loras",
        "semantic",
    ),
    (
        "enable-lora-without-adapters",
        engine(enable_lora=True),
        "spec.models[0].engineArgs.enable_lora",
        "semantic",
    ),
    (
        "media-limit-not-a-mapping",
        engine(limit_mm_per_prompt=2),
        "spec.models[0].engineArgs.limit_mm_per_prompt",
        "semantic",
    ),
    (
        "media-limit-negative",
        engine(limit_mm_per_prompt={"image": 2, "video": -1}),
        "spec.models[0].engineArgs.limit_mm_per_prompt.video",
        "semantic",
    ),
    (
        "media-limit-unknown-option",
        engine(limit_mm_per_prompt={"image": {"count": 1, "frames": 8}}),
        "spec.models[0].engineArgs.limit_mm_per_prompt.image.frames",
        "semantic",
    ),
    (
        "media-domains-not-a-list",
        engine(allowed_media_domains="example.com"),
        "spec.models[0].engineArgs.allowed_media_domains",
        "semantic",
    ),
    (
        "prefix-aware-without-prefix-cache",
        lambda d: (model(0, routing="prefixAware")(d), engine(enable_prefix_caching=False)(d)),
        "spec.models[0].engineArgs.enable_prefix_caching",
        "semantic",
    ),
    (
        "alias-shadows-model",
        spec(aliases=[{"name": "a", "targets": [{"model": "b", "weight": 1}]}]),
        "spec.aliases",
        "cel",
    ),
    (
        "aliases-repeat",
        spec(aliases=[{"name": "x", "targets": [{"model": "a", "weight": 1}]}] * 2),
        "spec.aliases",
        "cel",
    ),
    (
        "alias-without-targets",
        spec(aliases=[{"name": "x", "targets": []}]),
        "spec.aliases[0].targets",
        "schema",
    ),
    (
        "alias-weight-zero",
        spec(aliases=[{"name": "x", "targets": [{"model": "a", "weight": 0}]}]),
        "spec.aliases[0].targets[0].weight",
        "schema",
    ),
    (
        "alias-target-twice",
        spec(aliases=[{"name": "x", "targets": [{"model": "a", "weight": 1}, {"model": "a", "weight": 2}]}]),
        "spec.aliases[0].targets",
        "cel",
    ),
    (
        "alias-target-unknown",
        spec(aliases=[{"name": "x", "targets": [{"model": "a", "weight": 9}, {"model": "c", "weight": 1}]}]),
        "spec.aliases[0].targets[1].model",
        "semantic",
    ),
    (
        "alias-targets-an-alias",
        spec(
            aliases=[
                {"name": "x", "targets": [{"model": "a", "weight": 1}]},
                {"name": "y", "targets": [{"model": "x", "weight": 1}]},
            ]
        ),
        "spec.aliases[1].targets[0].model",
        "semantic",
    ),
    (
        "alias-mixes-tasks",
        lambda d: (
            model(1, task="embed")(d),
            spec(
                aliases=[{"name": "x", "targets": [{"model": "a", "weight": 1}, {"model": "b", "weight": 1}]}]
            )(d),
        ),
        "spec.aliases[0].targets[1].model",
        "semantic",
    ),
    (
        "alias-named-like-an-adapter",
        lambda d: (
            model(0, adapters=[{"name": "ft", "source": "o/f"}])(d),
            spec(aliases=[{"name": "ft", "targets": [{"model": "a", "weight": 1}]}])(d),
        ),
        "spec.aliases[0].name",
        "semantic",
    ),
    ("tensor-parallel-vs-gpus", engine(tensor_parallel_size=2), "spec.models[0].gpus", "semantic"),
    (
        "tensor-parallel-not-int",
        engine(tensor_parallel_size="two"),
        "spec.models[0].engineArgs.tensor_parallel_size",
        "semantic",
    ),
    (
        "gpu-model-without-gpu-workers",
        lambda d: ([m.pop("gpus") for m in d["spec"]["models"]], worker(gpusPerWorker=0)(d)),
        "spec.models[0].accelerator",
        "semantic",
    ),
    ("model-memory-fits-no-worker", model(0, memory="30Gi"), "spec.models[0]", "semantic"),
    (
        "min-replicas-exceed-gpus",
        lambda d: (replicas(min=3, max=3)(d), model(1, replicas={"min": 3, "max": 3})(d)),
        "spec.models",
        "semantic",
    ),
    (
        "no-workers-at-all",
        lambda d: (
            d["spec"]["models"][0].update(accelerator="cpu", gpus=0),
            d["spec"]["models"][1].update(accelerator="cpu", gpus=0),
            spec(workers=[])(d),
        ),
        "spec.workers",
        "semantic",
    ),
]


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)


def test_base_fleet_is_valid() -> None:
    fleet, problems = validate_fleet(base())
    assert problems == [] and fleet is not None
    assert apiserver_validate(build_crd(), "v1alpha1", base()) == []


@pytest.mark.parametrize(("change", "field", "layer"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_fleet_names_the_field(change: Callable[[Doc], None], field: str, layer: str) -> None:
    doc = base()
    change(doc)
    fleet, problems = validate_fleet(copy.deepcopy(doc))
    assert fleet is None
    assert field in [p.field for p in problems], (
        f"expected an error at {field}, got: {[str(p) for p in problems]}"
    )
    message = next(str(p) for p in problems if p.field == field)
    assert message.startswith(f"{field}: ") and len(message) > len(field) + 10

    server_fields = [e.field for e in apiserver_validate(build_crd(), "v1alpha1", doc)]
    if layer in ("schema", "cel") and field not in ("kind", "metadata.name"):
        assert field in server_fields, f"the API server would accept this fleet: {server_fields}"
    if layer == "semantic":
        assert server_fields == [], "semantic cases must pass the CRD; only the operator can catch them"


def test_metadata_name_length_is_a_cel_rule_of_the_crd() -> None:
    doc = base()
    doc["metadata"]["name"] = "a" * 48
    errors = apiserver_validate(build_crd(), "v1alpha1", doc)
    assert any("at most 47 characters" in str(e) for e in errors)


def test_unknown_field_is_reported_with_its_path() -> None:
    doc = base()
    doc["spec"]["models"][0]["replics"] = {"min": 0}
    _, problems = validate_fleet(doc)
    assert [str(p) for p in problems] == [
        'spec.models[0].replics: {"min": 0}: unknown field (check its spelling and the ModelFleet reference)'
    ]


MEDIA_LIMITS = [
    ({"image": {"count": 2, "width": 512, "height": 512}, "video": 0, "audio": 1}, True),
    ({"image": 4, "video": {"count": 1, "num_frames": 8}}, True),
    ({"video": -1}, False),
    ({"image": {"count": 1, "frames": 8}}, False),
    ({"image": {"width": 0}}, False),
    ({"audio": {"count": 1, "width": 5}}, False),
    (2, False),
]


@pytest.mark.parametrize(("limits", "valid"), MEDIA_LIMITS)
def test_media_limits_are_judged_as_vllm_judges_them(limits: Any, valid: bool) -> None:
    """`modelfleet validate` refuses the limit_mm_per_prompt values vLLM's engine would fail to start with,
    and accepts the ones it takes: the check runs vLLM's own config class on the same value."""
    from vllm.config.multimodal import MultiModalConfig

    doc = base()
    engine(limit_mm_per_prompt=limits)(doc)
    _, problems = validate_fleet(doc)
    assert (problems == []) is valid, [str(p) for p in problems]
    try:
        MultiModalConfig(limit_per_prompt=limits)
        engine_accepts = True
    except (ValueError, TypeError, AttributeError):
        engine_accepts = False
    assert engine_accepts is valid
