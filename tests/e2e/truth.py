"""Is the fleet's status true? `kubectl get mf` sampled on a thread, and at the same moments one request per
awake model through the fleet's serve Service, so a test can check that Ready never stood while a model
could not answer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import openai

if TYPE_CHECKING:
    from tests.support.cluster_fleet import Fleet


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since sampling started
    before: str  # the fleet's phase read just before the requests
    after: str  # and just after
    answered: dict[str, bool]  # per model: a completion came back

    @property
    def ready_throughout(self) -> bool:
        return self.before == "Ready" and self.after == "Ready"

    @property
    def all_answered(self) -> bool:
        return all(self.answered.values())


@dataclass
class TruthSampler:
    """Samples the fleet about every `every_s` seconds while in use (`with TruthSampler(...) as s:`)."""

    fleet: Fleet
    models: list[str]
    every_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _answers(self, model: str, addresses: list[str]) -> bool:
        if not addresses:
            return False
        client = self.fleet.client(timeout_s=15, base_url=f"http://{addresses[0]}:8000")
        try:
            done = client.completions.create(model=model, prompt="Hello", max_tokens=1, temperature=0)
        except (openai.OpenAIError, OSError):
            return False
        finally:
            client.close()
        return bool(done.choices)

    def _phase(self) -> str:
        found = self.fleet.kube.get("modelfleet", self.fleet.name) or {}
        return str((found.get("status") or {}).get("phase", ""))

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            before = self._phase()
            addresses = self.fleet.serve_addresses()
            answered = {model: self._answers(model, addresses) for model in self.models}
            after = self._phase()
            self.samples.append(Sample(round(time.monotonic() - started, 1), before, after, answered))
            self._stop.wait(self.every_s)

    def __enter__(self) -> TruthSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def ready_while_failing(self) -> list[Sample]:
        """Samples where the fleet said Ready before and after a request that failed."""
        return [s for s in self.samples if s.ready_throughout and not s.all_answered]

    def longest_false_ready_s(self) -> float:
        """The longest stretch of consecutive Ready-while-failing samples, in seconds (0 when none)."""
        longest, start = 0.0, None
        for sample in self.samples:
            if sample.ready_throughout and not sample.all_answered:
                start = sample.at if start is None else start
                longest = max(longest, sample.at - start + self.every_s)
            else:
                start = None
        return longest

    def describe(self) -> str:
        return "; ".join(
            f"{s.at}s {s.before}->{s.after} {''.join('+' if ok else '-' for ok in s.answered.values())}"
            for s in self.samples
        )
