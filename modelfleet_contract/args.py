"""The `args` of each Serve application: the renderer builds them (modelfleet/render/serve_config.py), the
serving app validates them before it builds anything (serving_app/app.py).

Strict in structure: an unknown or misspelt key, a wrong type or a value out of range fails the application
at build time with a message naming the field, instead of being silently ignored. The rules between fields
(min <= max, adapters on generating models, aliases over one task, unique names) are the operator's: its
validation (CEL and modelfleet/api/semantic.py) refuses a fleet that breaks them before anything is
rendered, so they are not checked twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelfleet_contract.tasks import Task, name_tasks
from modelfleet_contract.wire import DNS_LABEL

# A model, adapter or alias name: a route prefix, a Serve application name and a Kubernetes-safe id.
Name = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplicasArgs(_Strict):
    """How many engine replicas a model runs, mapped onto Serve's autoscaling_config."""

    min: int = Field(ge=0, description="Fewest replicas; 0 lets the model scale to zero when idle.")
    max: int = Field(ge=1, description="Most replicas.")
    initial: int | None = Field(
        default=None, ge=0, description="Replicas at deploy time; defaults to Serve's choice (min)."
    )
    target_ongoing_requests: int = Field(
        ge=1, description="Ongoing requests per replica the autoscaler aims for."
    )
    max_ongoing_requests: int = Field(ge=1, description="Requests one replica accepts at once.")
    upscale_delay_s: float = Field(ge=0, description="Seconds of sustained load before scaling up.")
    downscale_delay_s: float = Field(ge=0, description="Seconds of low load before scaling down.")


# A mounted Secret key, `<secretName>/<key>`, relative to the directory in MODELFLEET_API_KEYS_DIR.
KEY_FILE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"


class FrontDoorArgs(_Strict):
    """What every front door (the router, a model's ingress, a model's own server) enforces."""

    api_keys: list[Annotated[str, Field(pattern=KEY_FILE)]] = Field(
        description="Files holding the accepted API keys, relative to $MODELFLEET_API_KEYS_DIR; "
        "empty means no auth."
    )
    max_request_bytes: int = Field(ge=1, description="Largest request body; larger gets 413.")
    max_tokens: int = Field(ge=1, description="Largest max_tokens / max_completion_tokens.")
    max_n: int = Field(ge=1, description="Largest n (and best_of).")
    max_batch_items: int = Field(default=2048, ge=1, description="Most inputs in a prompt or input list.")
    media_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts a media URL may name though they resolve to a non-public address (the models' "
        "engineArgs.allowed_media_domains).",
    )
    body_timeout_s: float = Field(gt=0, description="Seconds a client may take to send its body.")


class ModelAppArgs(_Strict):
    """Args of one model's application (``serving_app.app:build_model_app``)."""

    name: Name = Field(description="The OpenAI model id and the route prefix.")
    source: str = Field(min_length=1, description="HF repo id or a local checkpoint path.")
    task: Task = Field(description="What the engine serves.")
    accelerator: Literal["gpu", "cpu"] = Field(description="Where the engine runs.")
    gpus: float = Field(ge=0, description="GPU share per replica (fractions pack models on a GPU).")
    cpus: float = Field(gt=0, description="CPUs reserved per replica.")
    memory_bytes: int | None = Field(default=None, ge=0, description="Memory reserved per replica.")
    replicas: ReplicasArgs
    engine_args: dict[str, Any] = Field(default_factory=dict, description="Passed to vLLM's engine as is.")
    adapters: dict[Name, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict, description="LoRA adapters: name -> local folder or HF repo id."
    )
    max_adapters_per_replica: int = Field(default=4, ge=1, description="Adapters loaded at once per replica.")
    routing: Literal["power_of_two", "prefix_aware"] = Field(
        default="power_of_two", description="Serve's request router for the model's replicas."
    )
    front_door: FrontDoorArgs

    def name_tasks(self) -> dict[str, str]:
        """Each name a request may carry here -> its task (adapters generate)."""
        return name_tasks({self.name: self.task}, self.adapters)


class AliasTargetArgs(_Strict):
    model: Name = Field(description="A model or adapter.")
    weight: int = Field(ge=1, description="Relative share of the alias's requests.")


class RouterAppArgs(_Strict):
    """Args of the fleet's router application (``serving_app.app:build_router_app``)."""

    models: list[Name] = Field(min_length=1, description="Names of the model applications.")
    adapters: dict[Name, str] = Field(
        default_factory=dict, description="Adapter name -> the model (application) it runs on."
    )
    aliases: dict[Name, list[AliasTargetArgs]] = Field(
        default_factory=dict, description="Alias name -> its weighted targets (models or adapters)."
    )
    tasks: dict[Name, Literal["embed", "transcribe"]] = Field(
        default_factory=dict, description="The task of each model that does not generate."
    )
    front_door: FrontDoorArgs

    def name_tasks(self) -> dict[str, str]:
        """Each name a request may carry -> its task (an alias has its targets')."""
        models = {m: self.tasks.get(m, "generate") for m in self.models}
        aliases = {alias: [t.model for t in targets] for alias, targets in self.aliases.items()}
        return name_tasks(models, self.adapters, aliases)
