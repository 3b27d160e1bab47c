"""The ModelFleet API, version v1alpha1: the single source of truth for the CRD, its docs and validation.

Field names are camelCase on the wire (aliases) and snake_case in Python. Every field has a
description: `kubectl explain modelfleet.spec.models` reads them from the generated CRD.
Rules that the API server can enforce are declared here as CEL (`x-kubernetes-validations`) next to
the fields they guard; `modelfleet.api.semantic` holds the checks CEL cannot express.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from modelfleet_contract.wire import DNS_LABEL, RESERVED_MODEL_NAMES, SERVE_PORT

GROUP = "modelfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelFleet"
PLURAL = "modelfleets"
SINGULAR = "modelfleet"
SHORT_NAMES = ["mf"]

# KubeRay derives Service and pod names from the RayService name and limits it to 47 characters.
MAX_FLEET_NAME = 47
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Secret's key as Kubernetes allows it (alphanumerics, '-', '_', '.'; not '.', '..' or '..x').
SECRET_KEY = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
# A Kubernetes resource quantity, e.g. 8Gi, 512Mi, 1.5G, 1000000.
QUANTITY = r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+|[KMGTPE]i?|[mkMGTPE])?$"


def endpoint_url(name: str, namespace: str) -> str:
    """A fleet's OpenAI base URL inside the cluster."""
    return f"http://{name}-serve-svc.{namespace}.svc:{SERVE_PORT}/v1"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; `field_path` points the error at a child field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """Base of every API object: camelCase aliases, unknown fields refused, docs from docstrings off."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=False,
    )


class SecretKeyRef(ApiModel):
    """A key of a Secret in the fleet's namespace. Only the reference is stored and rendered."""

    secret_name: str = Field(
        description="Name of the Secret in the fleet's namespace.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    key: str = Field(
        description="Key inside the Secret whose value is used.",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
    )

    @property
    def path(self) -> str:
        """`<secretName>/<key>`: where the key is mounted under the fleet's keys directory."""
        return f"{self.secret_name}/{self.key}"


class Replicas(ApiModel):
    """Replica bounds and autoscaling of one model (Ray Serve autoscaling_config)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.min <= self.max", "min must be less than or equal to max", ".min"),
                cel(
                    "self.maxOngoingRequests >= self.targetOngoingRequests",
                    "maxOngoingRequests must be at least targetOngoingRequests",
                    ".maxOngoingRequests",
                ),
            ]
        }
    )

    min: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest replicas. 0 opts the model into scale-to-zero: it sleeps when idle and "
        "wakes on its next request (which waits for it).",
    )
    max: int = Field(default=1, ge=1, le=1000, description="Most replicas the autoscaler may start.")
    target_ongoing_requests: int = Field(
        default=16,
        ge=1,
        le=100000,
        description="Ongoing requests per replica the autoscaler aims for; more load adds replicas.",
    )
    max_ongoing_requests: int = Field(
        default=64,
        ge=1,
        le=100000,
        description="Requests one replica accepts at once; beyond it requests queue in the router.",
    )
    upscale_delay_seconds: float = Field(
        default=0.0, ge=0, le=3600, description="How long load must stay high before replicas are added."
    )
    downscale_delay_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="How long load must stay low before replicas are removed (and, with min 0, "
        "before the model goes to sleep).",
    )


class Adapter(ApiModel):
    """A LoRA adapter of a model: a fine-tune clients select per request with `model: <name>`."""

    name: str = Field(
        description="The OpenAI `model` id that selects the adapter, on the fleet's endpoint and under its "
        "model's prefix. A DNS label, unique among the fleet's models, adapters and aliases.",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
    )
    source: str = Field(
        description="Where the adapter comes from: a folder holding adapter_config.json and its weights (in "
        "the model cache or the image), or a Hugging Face repo id (org/name, read with hugging_face_token).",
        min_length=1,
        max_length=1024,
    )


# Ray Serve's request routers, by the name the fleet spec uses.
ROUTERS = {
    "powerOfTwo": "Ray Serve's default: the less busy of two random replicas.",
    "prefixAware": "Ray Serve LLM's prefix-cache affinity: requests sharing a prompt prefix go to the "
    "replica that has it cached (vLLM's prefix caching on), unless that replica is much busier.",
}


class ModelSpec(ApiModel):
    """One model of the fleet: a Ray Serve application running vLLM."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(self.name in " + repr(list(RESERVED_MODEL_NAMES)) + ")",
                    "name is reserved for the fleet's router routes ("
                    + ", ".join(RESERVED_MODEL_NAMES)
                    + ")",
                    ".name",
                ),
                cel(
                    "self.accelerator == 'gpu' || !has(self.gpus) || double(self.gpus) == 0.0",
                    "gpus must be 0 or unset when accelerator is cpu",
                    ".gpus",
                ),
                cel(
                    "self.accelerator == 'cpu' || !has(self.gpus) || double(self.gpus) > 0.0",
                    "gpus must be greater than 0 when accelerator is gpu",
                    ".gpus",
                ),
                cel(
                    "!has(self.adapters) || size(self.adapters) == 0 || self.task == 'generate'",
                    "adapters need task generate (LoRA adapters fine-tune a generating model)",
                    ".adapters",
                ),
                cel(
                    "!has(self.adapters) || "
                    "self.adapters.all(a, self.adapters.exists_one(b, b.name == a.name))",
                    "adapter names must be unique",
                    ".adapters",
                ),
            ]
        }
    )

    name: str = Field(
        description="The OpenAI `model` id clients send, also the route prefix `/<name>/v1` and the Serve "
        "application name. A DNS label, unique in the fleet.",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
    )
    source: str = Field(
        description="Where the weights come from: a Hugging Face repo id (org/name) or a path inside the "
        "model cache or the image.",
        min_length=1,
        max_length=1024,
    )
    task: Literal["generate", "embed", "transcribe"] = Field(
        default="generate",
        description="What the model serves: generate (chat and completions), embed, transcribe.",
    )
    accelerator: Literal["gpu", "cpu"] = Field(
        default="gpu", description="gpu runs the CUDA engine on GPU workers; cpu runs vLLM's CPU build."
    )
    gpus: float | None = Field(
        default=None,
        ge=0,
        le=64,
        description="GPU share per replica. Fractions pack several models on one GPU (e.g. 0.45 + 0.45); "
        "above 1 it must be a whole number. Defaults to 1 for accelerator gpu and 0 for cpu.",
    )
    cpus: float = Field(default=1.0, gt=0, le=512, description="CPUs reserved per replica.")
    memory: str | None = Field(
        default=None,
        pattern=QUANTITY,
        max_length=32,
        description="Memory reserved per replica (a Kubernetes quantity such as 8Gi); unset reserves none.",
    )
    replicas: Replicas = Field(default_factory=Replicas, description="Replica bounds and autoscaling.")
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments passed to the vLLM engine as-is (snake_case, e.g. max_model_len, dtype, "
        "gpu_memory_utilization, enforce_eager).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    adapters: list[Adapter] = Field(
        default_factory=list,
        max_length=64,
        description="LoRA adapters served on this model's replicas, loaded on a replica when first asked for "
        "(vLLM's LoRA support is turned on for the model when this is not empty).",
    )
    max_adapters_per_replica: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Adapters one replica keeps loaded at once (vLLM's max_loras); asking for another loads "
        "it and unloads the least recently used one.",
    )
    routing: Literal["powerOfTwo", "prefixAware"] = Field(
        default="powerOfTwo",
        description="How a replica is picked for a request: "
        + " ".join(f"{name}: {what}" for name, what in ROUTERS.items()),
    )

    @property
    def gpu_share(self) -> float:
        """GPUs per replica with the accelerator's default applied."""
        if self.gpus is not None:
            return self.gpus
        return 1.0 if self.accelerator == "gpu" else 0.0


class Toleration(ApiModel):
    """A Kubernetes toleration for the worker pods."""

    key: str | None = Field(default=None, max_length=316, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; unset tolerates all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated before eviction."
    )


class WorkerGroup(ApiModel):
    """A Ray worker group: identical pods the Ray autoscaler adds and removes."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minWorkers <= self.maxWorkers",
                    "minWorkers must be less than or equal to maxWorkers",
                    ".minWorkers",
                ),
            ]
        }
    )

    name: str = Field(
        description="Group name (a DNS label, unique in the fleet).",
        min_length=1,
        max_length=40,
        pattern=DNS_LABEL,
    )
    gpus_per_worker: int = Field(default=1, ge=0, le=16, description="GPUs per worker pod (nvidia.com/gpu).")
    cpus_per_worker: float = Field(default=8.0, gt=0, le=512, description="CPUs per worker pod.")
    memory_per_worker: str = Field(
        default="32Gi", pattern=QUANTITY, max_length=32, description="Memory per worker pod (a quantity)."
    )
    min_workers: int = Field(
        default=0, ge=0, le=1000, description="Fewest workers. 0 lets GPU nodes scale to zero when idle."
    )
    max_workers: int = Field(default=4, ge=0, le=1000, description="Most workers the autoscaler may start.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the worker pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Tolerations of the worker pods."
    )


class HeadSpec(ApiModel):
    """The Ray head pod: GCS, dashboard, Serve controller, proxy and the fleet's router. No GPUs."""

    cpus: float = Field(default=2.0, gt=0, le=512, description="CPUs of the head pod.")
    memory: str = Field(default="8Gi", pattern=QUANTITY, max_length=32, description="Memory of the head pod.")


class ModelCache(ApiModel):
    """A PersistentVolumeClaim mounted on every Ray pod for model weights (HF_HOME)."""

    claim_name: str = Field(
        description="Name of the PVC in the fleet's namespace.", min_length=1, max_length=253
    )
    mount_path: str = Field(
        default="/models", pattern=r"^/", max_length=1024, description="Where the cache is mounted."
    )


class LabelSelectorRequirement(ApiModel):
    """One `matchExpressions` entry of a Kubernetes label selector."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                    "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                    ".values",
                ),
            ]
        }
    )

    key: str = Field(min_length=1, max_length=316, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] = Field(
        default_factory=list, max_length=64, description="Values for In and NotIn; empty otherwise."
    )


class LabelSelector(ApiModel):
    """A Kubernetes label selector; empty selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels that must all match.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Requirements that must all hold."
    )


class NetworkPeer(ApiModel):
    """Who may connect, as in a NetworkPolicy peer: pods matching `podSelector` in the namespaces matching
    `namespaceSelector`. Only `podSelector` means the fleet's namespace; only `namespaceSelector` means
    every pod of those namespaces."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.namespaceSelector) || has(self.podSelector)",
                    "set namespaceSelector, podSelector or both",
                ),
            ]
        }
    )

    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces, by label (`kubernetes.io/metadata.name: <ns>` names one); {} is all.",
    )
    pod_selector: LabelSelector | None = Field(default=None, description="Pods, by label; {} is all.")


class NetworkPolicySpec(ApiModel):
    """The NetworkPolicy the operator renders around the fleet's Ray pods (ingress only)."""

    enabled: bool = Field(
        default=True,
        description="Render the policy. In high-throughput mode every replica and HAProxy listen on all pod "
        "interfaces: without a policy any pod that can reach a Ray pod can skip the front door.",
    )
    allow_from: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=32,
        description="Clients allowed on the Serve port (8000). Empty: every pod of the fleet's namespace.",
    )
    metrics_from: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=32,
        description="Scrapers allowed on Ray's metrics port (8080; it also exports Serve's HAProxy metrics). "
        "Empty: every pod of the `monitoring` namespace.",
    )


class Limits(ApiModel):
    """What one request may ask of the fleet, enforced by every front door before a model sees it."""

    max_request_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body in bytes; larger ones get 413.",
    )
    max_tokens: int = Field(
        default=8192,
        ge=1,
        le=10_000_000,
        description="Largest `max_tokens` / `max_completion_tokens` a request may ask for; more gets 400. "
        "A generation request that names neither gets `max_tokens` set to this.",
    )
    max_n: int = Field(
        default=8, ge=1, le=128, description="Largest `n` (choices per request) and `best_of`; more gets 400."
    )
    max_batch_items: int = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        description="Most inputs one request may list: a completion's `prompt` list, an embedding's `input` "
        "list; more gets 400.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a client may take to send its request body once the headers arrived; "
        "slower clients get 408 and are cut off.",
    )


class AliasTarget(ApiModel):
    """A model or adapter an alias sends a share of its requests to."""

    model: str = Field(
        description="Name of a model or an adapter of the fleet.",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
    )
    weight: int = Field(
        ge=1, le=10000, description="Relative share: a target gets weight / (sum of weights) of the requests."
    )


class Alias(ApiModel):
    """A model id that names no engine but splits its requests over targets by weight (a canary, a
    rollout). A request with a `user` always lands on the same target, so a conversation stays on one
    version; changing weights changes only the fleet's router (no replica restarts)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.targets.all(t, self.targets.exists_one(u, u.model == t.model))",
                    "an alias must not name a target twice",
                    ".targets",
                ),
            ]
        }
    )

    name: str = Field(
        description="The `model` id clients send. A DNS label, unique among models, adapters and aliases.",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
    )
    targets: list[AliasTarget] = Field(
        min_length=1, max_length=16, description="Where the alias's requests go, by weight."
    )


class ModelFleetSpec(ApiModel):
    """Desired state: the models to serve and the Ray cluster that serves them."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.models.all(m, self.models.exists_one(n, n.name == m.name))",
                    "model names must be unique",
                    ".models",
                ),
                cel(
                    "!has(self.apiKeys) || self.apiKeys.all(k, self.apiKeys.exists_one(j, "
                    "j.secretName == k.secretName && j.key == k.key))",
                    "apiKeys must not name the same Secret key twice",
                    ".apiKeys",
                ),
                cel(
                    "!has(self.aliases) || self.aliases.all(a, self.aliases.exists_one(b, b.name == a.name))",
                    "alias names must be unique",
                    ".aliases",
                ),
                cel(
                    "!has(self.aliases) || self.aliases.all(a, !self.models.exists(m, m.name == a.name))",
                    "an alias must not have the name of a model (it would shadow it)",
                    ".aliases",
                ),
                cel(
                    "self.workers.all(w, self.workers.exists_one(v, v.name == w.name))",
                    "worker group names must be unique",
                    ".workers",
                ),
                cel(
                    "self.models.all(m, !has(m.gpus) || double(m.gpus) == 0.0 || "
                    "self.workers.exists(w, double(w.gpusPerWorker) >= double(m.gpus)))",
                    "each model's gpus must be at most the gpusPerWorker of some worker group",
                    ".models",
                ),
            ]
        }
    )

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Serving image (Ray + vLLM + serving_app) for every Ray pod; "
        "the operator's default if unset.",
    )
    models: list[ModelSpec] = Field(min_length=1, max_length=64, description="The models to serve.")
    workers: list[WorkerGroup] = Field(
        default_factory=list, max_length=16, description="Ray worker groups the models run on."
    )
    head: HeadSpec = Field(default_factory=HeadSpec, description="The Ray head pod.")
    model_cache: ModelCache | None = Field(default=None, description="Optional PVC for model weights.")
    hugging_face_token: SecretKeyRef | None = Field(
        default=None, description="Hugging Face token for gated models, by Secret reference only (HF_TOKEN)."
    )
    api_key: SecretKeyRef | None = Field(
        default=None,
        description="API key clients must send as `Authorization: Bearer <key>`, by Secret reference only. "
        "Shorthand for a one-entry apiKeys; both may be set.",
    )
    api_keys: list[SecretKeyRef] = Field(
        default_factory=list,
        max_length=64,
        description="API keys, one per client or team, by Secret reference only. Any of them is accepted; "
        "editing a Secret rotates its key on the running replicas (mounted, re-read within about a minute), "
        "deleting one revokes it.",
    )
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec,
        description="The NetworkPolicy around the fleet's Ray pods (on by default).",
    )
    limits: Limits = Field(default_factory=Limits, description="Per-request limits of the front doors.")
    aliases: list[Alias] = Field(
        default_factory=list,
        max_length=32,
        description="Model ids that split their requests over models or adapters by weight, on the fleet's "
        "endpoint (not under a model's prefix).",
    )
    upgrade_strategy: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] = Field(
        default="NewCluster",
        description="How KubeRay rolls out a change of image, head or workers (RayService upgradeStrategy).",
    )
    high_throughput: bool = Field(
        default=True,
        description="Ray Serve's high-throughput mode on every Ray pod: HAProxy instead of the Python "
        "proxy, gRPC between replicas, and each model's server as its own HTTP ingress (direct "
        "streaming): several times the standard path's throughput (docs/benchmarks.md). HAProxy and the "
        "replicas then listen on all pod interfaces (only the Serve port is on the Service).",
    )

    @property
    def adapter_bases(self) -> dict[str, str]:
        """Every adapter's name -> the name of the model it runs on."""
        return {adapter.name: model.name for model in self.models for adapter in model.adapters}

    @property
    def all_api_keys(self) -> list[SecretKeyRef]:
        """The accepted keys: apiKey first, then apiKeys, each Secret key once."""
        refs = ([self.api_key] if self.api_key is not None else []) + self.api_keys
        return list({ref.path: ref for ref in refs}.values())


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(description="Condition type: Ready, SpecValid, RayServiceReady or Upgrading.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(default=None, description="Generation the condition was set for.")


ModelState = Literal["Pending", "Deploying", "Ready", "ScaledToZero", "Unhealthy", "Failed"]
FleetPhase = Literal["Pending", "Deploying", "Ready", "Degraded", "Failed", "Invalid", "Upgrading"]
# What each phase and model state means (docs/reference.md is generated from these).
PHASES: dict[str, str] = {
    "Pending": "the RayService does not exist yet",
    "Deploying": "the RayService exists, and some models are still starting, with none failed",
    "Ready": "every model is serving or scaled to zero and ready to wake, and KubeRay counts serve endpoints",
    "Degraded": "some models serve while at least one is `Failed` or `Unhealthy`",
    "Failed": "every model failed, the API server refused the RayService (or the fleet's NetworkPolicy or "
    "ConfigMap), or KubeRay refused it (`ValidationFailed`) or gave up on it (`InitializingTimeout`), with "
    "KubeRay's message",
    "Invalid": "the spec fails a semantic check (see `SpecValid`); the running RayService is left as it was",
    "Upgrading": "KubeRay is rolling out a new Ray cluster (`UpgradeInProgress` on the RayService)",
}
MODEL_STATES: dict[str, str] = {
    "Pending": "not deployed yet",
    "Deploying": "its Serve application is starting: the Ray cluster, a worker (`Waiting for a worker in "
    "group <group>`), the model download or the engine start (`Loading the model`)",
    "Ready": "serving",
    "ScaledToZero": "healthy with zero replicas, or waking (a request asked for a replica that does not run "
    "yet: `Waking: ...`); its next request waits for it and is never refused for its sleep",
    "Unhealthy": "it was running and its health checks fail",
    "Failed": "its application failed to deploy; `message` holds the exception line of the Serve traceback",
}


class ModelStatus(ApiModel):
    """Observed state of one model."""

    name: str = Field(description="Model name.")
    state: ModelState = Field(description="Pending, Deploying, Ready, ScaledToZero, Unhealthy or Failed.")
    replicas: int | None = Field(default=None, description="Running replicas, when known.")
    message: str = Field(default="", description="Why the model is in this state, when not Ready.")


class AliasTargetStatus(ApiModel):
    """One target of an alias and the state of the model that serves it."""

    model: str = Field(description="The target model or adapter.")
    weight: int = Field(description="Its weight.")
    state: Literal["Pending", "Deploying", "Ready", "ScaledToZero", "Unhealthy", "Failed", "Unknown"] = Field(
        description="State of the model serving it (for an adapter: its model's); Unknown if none does."
    )


class AliasStatus(ApiModel):
    """Observed state of one alias."""

    name: str = Field(description="Alias name.")
    targets: list[AliasTargetStatus] = Field(
        default_factory=list, description="Its targets and their states."
    )


class WorkerGroupStatus(ApiModel):
    """Observed worker pods of one worker group of the serving cluster."""

    group: str = Field(description="Worker group name (spec.workers[].name).")
    ready: int = Field(description="Worker pods of the group that are Ready (their Ray node is up).")
    desired: int = Field(
        description="Worker pods the group has now: what the autoscaler asked for and KubeRay created."
    )


class ModelFleetStatus(ApiModel):
    """Observed state, written by the operator."""

    phase: FleetPhase = Field(
        default="Pending", description="Pending, Deploying, Ready, Degraded, Failed, Invalid or Upgrading."
    )
    ready: str = Field(default="", description="Models serving or ready to wake / all models, e.g. 2/3.")
    endpoint: str = Field(default="", description="OpenAI base URL of the fleet inside the cluster.")
    ray_service: str = Field(default="", description="Name of the owned RayService.")
    message: str = Field(default="", description="One-line summary of what needs attention.")
    observed_generation: int | None = Field(default=None, description="Last fleet generation acted on.")
    models: list[ModelStatus] = Field(default_factory=list, description="Per-model state.")
    workers: list[WorkerGroupStatus] = Field(
        default_factory=list,
        description="Per worker group: worker pods ready and wanted (0/0: scaled to zero).",
    )
    ready_workers: str = Field(
        default="", description="Worker pods ready / worker pods wanted, over every group, e.g. 1/2."
    )
    aliases: list[AliasStatus] = Field(
        default_factory=list, description="Per-alias targets, weights and the state of what serves them."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, SpecValid, RayServiceReady, Upgrading."
    )


class ObjectMeta(BaseModel):
    """The parts of metadata the renderer reads; the rest is kept but ignored."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=MAX_FLEET_NAME, pattern=DNS_LABEL)
    namespace: str = Field(default="default", min_length=1, max_length=63, pattern=DNS_LABEL)
    uid: str | None = None
    generation: int | None = None


class ModelFleet(BaseModel):
    """A fleet of LLMs served from one Ray cluster (a KubeRay RayService)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    api_version: Literal["modelfleet.dev/v1alpha1"] = Field(
        default="modelfleet.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["ModelFleet"] = "ModelFleet"
    metadata: ObjectMeta
    spec: ModelFleetSpec
    status: ModelFleetStatus | None = None
