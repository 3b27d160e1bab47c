"""The model servers' autoscaling policy: Ray Serve's default decisions, plus wake-from-zero metrics.

Only Serve's controller sees a model go from zero replicas to one on every data path (the router, a
model's ingress, HAProxy in high-throughput mode), so the wake metrics are taken there, by the policy
the controller calls on every control-loop tick (every 0.1 s):

- ``ray_modelfleet_wakes_total{model}``: wakes from zero that reached a running replica;
- ``ray_modelfleet_wake_duration_seconds{model}``: from the last tick that saw the model asleep and
  idle to the first tick that sees a replica running (engine loaded); the first request's time to first
  token adds its own prefill to this.

Serve skips the policy while a deployment at zero has requests waiting (its cold-start fast path scales
up at once), which is why the wake is timed between the two ticks around it. Serve pickles this module
by value into the controller, which cannot import ``serving_app``: it imports nothing from it.
"""

from __future__ import annotations

import time
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext
from ray.util import metrics

# Seconds: a wake on a warm GPU node takes ~10 s, on a new node with an image pull several minutes.
# Narrow enough to read a wake's length off its bucket: Ray exports a histogram's _sum from bucket
# midpoints, not from the observed values.
WAKE_BUCKETS = [1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 50, 60, 75, 90, 120, 180, 240, 300, 600]


class FleetAutoscalingPolicy:
    """Serve instantiates this once per model server deployment and calls it with its context."""

    def __init__(self) -> None:
        self._asleep_at: float | None = None  # last tick that saw zero replicas and zero target
        self._wakes = metrics.Counter(
            "modelfleet_wakes",
            description="Wakes from zero replicas that reached a running replica.",
            tag_keys=("model",),
        )
        self._wake_seconds = metrics.Histogram(
            "modelfleet_wake_duration_seconds",
            description="Seconds from a request finding the model at zero to a replica running.",
            boundaries=WAKE_BUCKETS,
            tag_keys=("model",),
        )

    def __call__(self, ctx: AutoscalingContext) -> tuple[int | float, dict[str, Any]]:
        now = ctx.current_time or time.time()
        if ctx.current_num_replicas == 0 and ctx.target_num_replicas == 0:
            self._asleep_at = now
        elif ctx.current_num_replicas > 0 and self._asleep_at is not None:
            tags = {"model": ctx.app_name or ctx.deployment_name}
            self._wakes.inc(tags=tags)
            self._wake_seconds.observe(max(0.0, now - self._asleep_at), tags=tags)
            self._asleep_at = None
        return replica_queue_length_autoscaling_policy(ctx)


# The import path serveConfigV2's autoscaling_config names (serving_app/engine.py).
POLICY_PATH = f"{__name__}:{FleetAutoscalingPolicy.__name__}"
