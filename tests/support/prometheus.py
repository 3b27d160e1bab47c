"""Prometheus text read into samples a test can sum by labels (prometheus_client's own parser)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# (sample name, its labels) -> value; series that differ only by what a scrape adds are summed.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, into: Samples | None = None) -> Samples:
    """The samples at `url` (added to `into`, for a sum over several exporters)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    samples: Samples = into if into is not None else {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            samples[key] = samples.get(key, 0.0) + s.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over every series whose labels match `labels` (an empty value: label absent)."""
    found = 0.0
    for (sample, series), value in samples.items():
        have = dict(series)
        if sample == name and all(have.get(k, "") == v for k, v in labels.items()):
            found += value
    return found
