"""What a stage spent, priced with the rates in settings.

A stage reports usage (compute seconds, Suno credits, egress bytes); this turns it into amounts by
kind, which the repository sums on the job (``add_cost(job_id, kind, amount)``) and the
``job_cost_total`` metric sums per pipeline. Amounts are in the rates' currency.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from services.settings import Settings
from services.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# Google prices egress per GiB (what its price list calls "GB").
BYTES_PER_GB = 1024**3

# Usage field -> the cost kind it is stored under on the job (Cost.items).
KIND_OF_USAGE = {"compute_seconds": "compute", "suno_credits": "suno_credits", "egress_bytes": "egress"}


@dataclass(frozen=True)
class StageCost:
    compute_seconds: float = 0.0
    suno_credits: float = 0.0
    egress_bytes: int = 0

    def amounts(self, settings: Settings) -> dict[str, float]:
        return cost_items(settings, asdict(self))


def cost_items(settings: Settings, usage: Mapping[str, float]) -> dict[str, float]:
    """Usage by field (compute_seconds, suno_credits, egress_bytes) -> amount by kind; kinds whose
    amount is zero are left out. An unknown usage field is logged and ignored, never fatal."""
    rates = {
        "compute_seconds": settings.cost_per_compute_second,
        "suno_credits": settings.cost_per_suno_credit,
        "egress_bytes": settings.cost_per_gb_egress / BYTES_PER_GB,
    }
    amounts: dict[str, float] = {}
    for field, quantity in usage.items():
        if field not in rates:
            log.warning("unknown usage field %r ignored in cost", field)
            continue
        amount = float(quantity) * rates[field]
        if amount > 0:
            amounts[KIND_OF_USAGE[field]] = amount
    return amounts


class _CostStore(Protocol):
    def add_cost(self, job_id: str, kind: str, amount: float) -> None: ...


def charge_stage(
    settings: Settings, store: _CostStore, metrics: Metrics, *, job_id: str, pipeline: str, usage: StageCost
) -> dict[str, float]:
    """Add a stage's cost to its job and to ``job_cost_total``; returns the amounts by kind."""
    amounts = usage.amounts(settings)
    for kind, amount in amounts.items():
        store.add_cost(job_id, kind, amount)
        metrics.cost(pipeline, kind, amount)
    return amounts
