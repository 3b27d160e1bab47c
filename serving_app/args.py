"""The args contract between the renderer and the serving app.

serveConfigV2 carries one ``args`` document per application; these models are the only thing the
operator and the serving app share, so they are strict: an unknown or misspelt key fails the
application at build time with a message naming the field instead of being silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A DNS label: the model name is a route prefix, a Serve application name and a Kubernetes-safe id.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


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

    @model_validator(mode="after")
    def _bounds(self) -> ReplicasArgs:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must not exceed replicas.max ({self.max})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"replicas.initial ({self.initial}) must lie within [{self.min}, {self.max}]")
        return self


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
    max_n: int = Field(ge=1, description="Largest n.")
    body_timeout_s: float = Field(gt=0, description="Seconds a client may take to send its body.")


class ModelAppArgs(_Strict):
    """Args of one model's application (``serving_app.app:build_model_app``)."""

    name: str = Field(pattern=DNS_LABEL, description="The OpenAI model id and the route prefix.")
    source: str = Field(min_length=1, description="HF repo id or a local checkpoint path.")
    task: Literal["generate", "embed", "transcribe"] = Field(description="What the engine serves.")
    accelerator: Literal["gpu", "cpu"] = Field(description="Where the engine runs.")
    gpus: float = Field(ge=0, description="GPU share per replica (fractions pack models on a GPU).")
    cpus: float = Field(gt=0, description="CPUs reserved per replica.")
    memory_bytes: int | None = Field(default=None, ge=0, description="Memory reserved per replica.")
    replicas: ReplicasArgs
    engine_args: dict[str, Any] = Field(default_factory=dict, description="Passed to vLLM's engine as is.")
    adapters: dict[Annotated[str, Field(pattern=DNS_LABEL)], Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict, description="LoRA adapters: name -> local folder or HF repo id."
    )
    max_adapters_per_replica: int = Field(default=4, ge=1, description="Adapters loaded at once per replica.")
    routing: Literal["power_of_two", "prefix_aware"] = Field(
        default="power_of_two", description="Serve's request router for the model's replicas."
    )
    front_door: FrontDoorArgs

    def name_tasks(self) -> dict[str, str]:
        """Each name a request may carry here -> its task (adapters generate)."""
        return {self.name: self.task} | dict.fromkeys(self.adapters, "generate")

    @model_validator(mode="after")
    def _adapters_need_generate(self) -> ModelAppArgs:
        if self.adapters and self.task != "generate":
            raise ValueError(f"adapters need task 'generate', got {self.task!r}")
        return self

    @model_validator(mode="after")
    def _accelerator_matches_gpus(self) -> ModelAppArgs:
        if self.accelerator == "gpu" and self.gpus <= 0:
            raise ValueError("accelerator 'gpu' needs gpus > 0")
        if self.accelerator == "cpu" and self.gpus != 0:
            raise ValueError(f"accelerator 'cpu' needs gpus == 0, got {self.gpus}")
        return self


class AliasTargetArgs(_Strict):
    model: str = Field(pattern=DNS_LABEL, description="A model or adapter.")
    weight: int = Field(ge=1, description="Relative share of the alias's requests.")


class RouterAppArgs(_Strict):
    """Args of the fleet's router application (``serving_app.app:build_router_app``)."""

    models: list[Annotated[str, Field(pattern=DNS_LABEL)]] = Field(
        min_length=1, description="Names of the model applications."
    )
    adapters: dict[Annotated[str, Field(pattern=DNS_LABEL)], str] = Field(
        default_factory=dict, description="Adapter name -> the model (application) it runs on."
    )
    aliases: dict[Annotated[str, Field(pattern=DNS_LABEL)], list[AliasTargetArgs]] = Field(
        default_factory=dict, description="Alias name -> its weighted targets (models or adapters)."
    )
    tasks: dict[Annotated[str, Field(pattern=DNS_LABEL)], Literal["embed", "transcribe"]] = Field(
        default_factory=dict, description="The task of each model that does not generate."
    )
    front_door: FrontDoorArgs

    def _servable_tasks(self) -> dict[str, str]:
        """Each model and adapter -> its task (adapters generate)."""
        return {m: self.tasks.get(m, "generate") for m in self.models} | dict.fromkeys(
            self.adapters, "generate"
        )

    def name_tasks(self) -> dict[str, str]:
        """Each name a request may carry -> its task (an alias has its targets')."""
        tasks = self._servable_tasks()
        return tasks | {alias: tasks[targets[0].model] for alias, targets in self.aliases.items()}

    @model_validator(mode="after")
    def _unique(self) -> RouterAppArgs:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be unique, got {self.models}")
        for adapter, base in self.adapters.items():
            if base not in self.models:
                raise ValueError(f"adapter {adapter!r} runs on {base!r}, which is not in models")
            if adapter in self.models:
                raise ValueError(f"adapter {adapter!r} has the name of a model")
        for model in self.tasks:
            if model not in self.models:
                raise ValueError(f"tasks names {model!r}, which is not in models")
        tasks = self._servable_tasks()
        servable = set(tasks)
        for alias, targets in self.aliases.items():
            if alias in servable:
                raise ValueError(f"alias {alias!r} has the name of a model or adapter")
            if not targets:
                raise ValueError(f"alias {alias!r} has no targets")
            for target in targets:
                if target.model not in servable:
                    raise ValueError(f"alias {alias!r} targets {target.model!r}, not a model or adapter")
            if len({tasks[t.model] for t in targets}) > 1:
                raise ValueError(f"alias {alias!r} mixes tasks: {sorted({tasks[t.model] for t in targets})}")
        return self
