"""Kubernetes resource quantities (8Gi, 512Mi, 1.5G, 100m) as numbers, for arithmetic and comparisons."""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)(?P<suffix>[KMGTPE]i|[mkMGTPE])?$"
)


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity string; ValueError names the text when it is not one."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 8Gi, 512Mi, 2)")
    return Decimal(match["number"]) * _SUFFIX[match["suffix"] or ""]


def quantity_bytes(text: str) -> int:
    """A memory quantity in whole bytes."""
    return int(parse_quantity(text))
