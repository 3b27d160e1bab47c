"""What each task answers, and the task of each name a request may carry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from modelfleet_contract.wire import CHAT, COMPLETIONS, EMBEDDINGS, INFER, TRANSCRIPTIONS

Task = Literal["generate", "embed", "transcribe"]
TASKS: tuple[Task, ...] = ("generate", "embed", "transcribe")
# The calls each task answers (on the fleet's endpoint and under the model's prefix).
TASK_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "generate": (CHAT, COMPLETIONS, INFER),
    "embed": (EMBEDDINGS,),
    "transcribe": (TRANSCRIPTIONS,),
}


def endpoints_text(task: str) -> str:
    """`/v1/chat/completions, /v1/completions and /v1/infer`: a task's calls, for an error message."""
    *rest, last = TASK_ENDPOINTS[task]
    return f"{', '.join(rest)} and {last}" if rest else last


def name_tasks(
    models: Mapping[str, str],
    adapters: Mapping[str, str] | Sequence[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """Each name a request may carry -> its task: a model its own, an adapter 'generate' (a LoRA on a
    generating model), an alias its first target's (the operator refuses an alias whose targets differ)."""
    tasks = dict(models) | dict.fromkeys(adapters, "generate")
    return tasks | {alias: tasks[targets[0]] for alias, targets in (aliases or {}).items() if targets}
