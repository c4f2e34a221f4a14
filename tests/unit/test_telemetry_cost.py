"""Cost: usage priced with the rates in settings, added to the job and to job_cost_total."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from services.settings import Settings
from services.telemetry import StageCost, Telemetry, charge_stage, cost_items
from services.telemetry.cost import BYTES_PER_GB

RATES = Settings(cost_per_compute_second=0.5, cost_per_suno_credit=2.0, cost_per_gb_egress=0.1)


def test_stage_cost_is_priced_by_kind():
    amounts = StageCost(compute_seconds=3, suno_credits=10, egress_bytes=2 * BYTES_PER_GB).amounts(RATES)
    assert amounts == {
        "compute": pytest.approx(1.5),
        "suno_credits": pytest.approx(20.0),
        "egress": pytest.approx(0.2),
    }


def test_zero_usage_is_left_out():
    assert StageCost(compute_seconds=2).amounts(RATES) == {"compute": pytest.approx(1.0)}
    assert StageCost().amounts(RATES) == {}


def test_usage_by_field_name_as_steps_report_it_and_unknown_fields_are_ignored(caplog):
    assert cost_items(RATES, {"compute_seconds": 1.0, "gpu_hours": 5}) == {"compute": pytest.approx(0.5)}
    assert "gpu_hours" in caplog.text


class RecordingStore:
    def __init__(self) -> None:
        self.added: list[tuple[str, str, float]] = []

    def add_cost(self, job_id: str, kind: str, amount: float) -> None:
        self.added.append((job_id, kind, amount))


def test_charge_stage_adds_to_the_job_and_to_the_metric():
    telemetry = Telemetry.create(
        Settings(metrics_exporter="prometheus", cost_per_compute_second=0.5, cost_per_suno_credit=2.0),
        resource=Resource.create({}),
    )
    store = RecordingStore()
    try:
        amounts = charge_stage(
            telemetry.settings,
            store,
            telemetry.metrics,
            job_id="j1",
            pipeline="music_clips",
            usage=StageCost(compute_seconds=4, suno_credits=1),
        )
        body = telemetry.prometheus_exposition()[0].decode()
    finally:
        telemetry.shutdown()
    assert amounts == {"compute": 2.0, "suno_credits": 2.0}
    assert store.added == [("j1", "compute", 2.0), ("j1", "suno_credits", 2.0)]
    [family] = [f for f in text_string_to_metric_families(body) if f.name == "job_cost"]
    assert {(s.labels["pipeline"], s.labels["kind"]): s.value for s in family.samples} == {
        ("music_clips", "compute"): 2.0,
        ("music_clips", "suno_credits"): 2.0,
    }
