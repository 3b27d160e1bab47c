"""LoRA adapters and aliases: which names a front door answers to, and where a replica finds an adapter.

One `model` namespace per fleet: models, their adapters (served by the base model's replicas through Ray Serve
LLM's multiplexing: the adapter's name is the multiplexed model id, so Serve sends it to a replica that has it
loaded and vLLM loads it once per replica) and aliases (resolved by the fleet's router to one target per
request, by weight, sticky per `user`).

Ray Serve LLM's own adapter loader reads only cloud buckets (``dynamic_lora_loading_path`` must be s3://,
gs://, abfss:// or azure://) and lists adapters by scanning the bucket; fleets name each adapter's source
instead (a folder in the model cache or the image, or a Hugging Face repo id), so ``AdapterLoader`` takes
its place through LLMServer's ``model_downloader`` hook.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from modelfleet_contract.args import AliasTargetArgs
from modelfleet_contract.errors import unknown_model
from serving_app.errors import FleetHTTPError
from serving_app.ray_compat import DiskMultiplexConfig

# vLLM keys loaded adapters by name; the id only has to be unique within the replica's process.
_adapter_ids = itertools.count(1)


def resolve_source(name: str, source: str) -> str:
    """The local folder holding the adapter ``name``: ``source`` itself, or a Hugging Face snapshot of it."""
    if os.path.isdir(source):
        return source
    if source.startswith(("/", ".")) or source.count("/") != 1:
        raise FileNotFoundError(
            f"adapter {name!r}: source {source!r} is not a folder on this node, nor a Hugging Face repo id"
        )
    from huggingface_hub import snapshot_download

    # HF_TOKEN (the fleet's huggingFaceToken) and HF_HOME (the model cache) come from the environment.
    return str(snapshot_download(repo_id=source))


class AdapterLoader:
    """What LLMServer calls to get an adapter onto its replica (the ``model_downloader`` interface)."""

    sources: Mapping[str, str] = {}

    def __init__(self, download_timeout_s: float | None = None, max_tries: int = 1) -> None:
        self.download_timeout_s = download_timeout_s
        self.max_tries = max_tries  # Hugging Face downloads retry by themselves

    async def load_model_from_config(
        self,
        lora_model_id: str,
        llm_config: Any,  # noqa: ARG002 (the interface's; the sources are ours)
    ) -> DiskMultiplexConfig:
        source = self.sources.get(lora_model_id)
        if source is None:
            raise FleetHTTPError(404, unknown_model(lora_model_id, self.sources), param="model")
        path = await asyncio.wait_for(
            asyncio.to_thread(resolve_source, lora_model_id, source), self.download_timeout_s
        )
        return DiskMultiplexConfig.model_validate(
            {
                "model_id": lora_model_id,
                "max_total_tokens": None,
                "local_path": path,
                "lora_assigned_int_id": next(_adapter_ids),
            }
        )


def adapter_loader(sources: Mapping[str, str]) -> type[AdapterLoader]:
    """An ``AdapterLoader`` class that knows ``sources`` (LLMServer instantiates the class itself)."""
    return type("FleetAdapterLoader", (AdapterLoader,), {"sources": dict(sources)})


def model_card(
    name: str, *, parent: str | None = None, targets: Sequence[AliasTargetArgs] = ()
) -> dict[str, Any]:
    """An entry of ``/v1/models`` in OpenAI's shape; ``parent`` is an adapter's model (as vLLM writes it),
    ``targets`` an alias's weighted targets."""
    card: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "modelfleet",
        "parent": parent,
        "permission": [],
        "metadata": {},
    }
    if targets:
        card["targets"] = [{"model": t.model, "weight": t.weight} for t in targets]
    return card


def pick_target(alias: str, targets: Sequence[AliasTargetArgs], user: str | None) -> str:
    """One target of ``alias``, chosen by weight: at random, or by a hash of ``user`` so the same user always
    gets the same target while the weights stay the same."""
    total = sum(t.weight for t in targets)
    if user:
        digest = hashlib.sha256(f"{alias}\0{user}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % total
    else:
        point = random.randrange(total)
    for target in targets:
        point -= target.weight
        if point < 0:
            return target.model
    return targets[-1].model
