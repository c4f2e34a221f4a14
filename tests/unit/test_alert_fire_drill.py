"""Fire drill: every alert policy in terraform/modules/monitoring can fire on what the code emits.

Each condition's filter is read from the Terraform itself (python-hcl2, interpolations resolved the
way the stack resolves them) and evaluated against signals produced here by the code that produces
them in production:

- custom metrics: the real Metrics instruments, exported through the real Cloud Monitoring exporter
  (its client records the CreateTimeSeries requests instead of sending them);
- log-based metrics: real JSON log lines from the code's logger (a breaker opening, an error, a
  worker delivery), passed through each google_logging_metric's own filter and label extractors;
- Pub/Sub's subscription metrics: the series Pub/Sub keeps for the subscriptions of
  infra/topology.yaml, as Terraform names them.

A filter that names a metric, a label value or a log text the code does not produce matches
nothing, and the drill says which condition could never fire.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pybreaker
import pytest
import yaml
from opentelemetry.sdk.resources import Resource

from infra.topology import load_topology
from services.external.resilience import _LogBreakerChanges
from services.pipelines.spec import JobStatus
from services.settings import Settings
from services.telemetry import Telemetry, bind_labels, configure_logging
from services.telemetry.metrics import CLOUD_MONITORING_PREFIX

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "terraform" / "modules" / "monitoring"
PREFIX = "jt-drill-"
WORKER_SERVICE = f"{PREFIX}pipeline-worker"  # "<prefix><entry point key with _ as ->"


# ---- reading the Terraform ---------------------------------------------------------------------------
def load(name: str) -> dict[str, Any]:
    with open(MONITORING / name) as f:
        return hcl2.load(f)


def text(value: str) -> str:
    """An HCL string as python-hcl2 hands it over (quoted, inner quotes escaped) -> its text."""
    value = value.replace('\\"', '"').replace("\\\\", "\\")
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


MAIN, ALERTS, VARIABLES = load("main.tf"), load("alerts.tf"), load("variables.tf")
LOCALS = MAIN["locals"][0]


def resources(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        text(name): body
        for block in doc.get("resource", [])
        for key, named in block.items()
        if text(key) == kind
        for name, body in named.items()
    }


LOG_METRICS = {**resources(MAIN, "google_logging_metric"), **resources(ALERTS, "google_logging_metric")}


def variable_default(name: str) -> Any:
    for block in VARIABLES["variable"]:
        for key, body in block.items():
            if text(key) == name:
                return text(body["default"])
    raise KeyError(name)


def subscriptions_by_role() -> dict[str, list[str]]:
    """The pubsub module's roles: work (pushed to the worker), dead_letter (to the DLQ analyzer),
    parking (pulled by a person)."""
    roles: dict[str, list[str]] = {"work": [], "dead_letter": [], "parking": []}
    topology = load_topology()
    dead_letter_topics = {sub.dead_letter_topic for sub in topology.subscriptions.values()}
    # The same rule as the module's outputs (terraform/modules/pubsub/outputs.tf).
    for name, sub in topology.subscriptions.items():
        if sub.topic not in dead_letter_topics:
            role = "work"
        else:
            role = "dead_letter" if sub.push_to is not None else "parking"
        roles[role].append(f"{PREFIX}{name}")
    return roles


SUBSCRIPTIONS = subscriptions_by_role()
DECLARED_METRICS = yaml.safe_load((REPO / "infra" / "metrics.yaml").read_text())
ENTRY_POINTS = yaml.safe_load((REPO / "terraform" / "entrypoints.yaml").read_text())
SERVICES = [f"{PREFIX}{key.replace('_', '-')}" for key in ENTRY_POINTS]
VARS = {
    "prefix": PREFIX,
    "worker_service": WORKER_SERVICE,
    "metric_prefix": variable_default("metric_prefix"),
    "metric_resource_type": variable_default("metric_resource_type"),
}


def resolve(template: str) -> str:
    """Replace every ``${...}`` the monitoring module's filters use; fail on any other shape."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if m := re.fullmatch(r"var\.(\w+)", expr):
            return VARS[m.group(1)]
        if expr == "local.pubsub_metric":
            return resolve(text(LOCALS["pubsub_metric"]))
        if m := re.fullmatch(r'local\.metric\["(\w+)"\]', expr):
            # One entry per declared descriptor (metrics.tf, from infra/metrics.yaml).
            assert m.group(1) in DECLARED_METRICS, f"{m.group(1)} has no descriptor in infra/metrics.yaml"
            [for_body] = re.findall(r'name => (".*")\}\}$', LOCALS["metric"])
            descriptor_type = f"${{var.metric_prefix}}/{m.group(1)}"
            return resolve(text(for_body).replace("${descriptor.type}", descriptor_type))
        if m := re.fullmatch(r'local\.one_of\["(\w+)"\]', expr):
            return ", ".join(f'"{name}"' for name in SUBSCRIPTIONS[m.group(1)])
        if expr == "local.services":
            return ", ".join(f'"{name}"' for name in SERVICES)
        if m := re.fullmatch(r"google_logging_metric\.(\w+)\.name", expr):
            return resolve(text(LOG_METRICS[m.group(1)]["name"]))
        raise AssertionError(f"the fire drill cannot resolve ${{{expr}}}")

    return re.sub(r"\$\{([^{}]*)\}", one, template)


# ---- evaluating a filter -----------------------------------------------------------------------------
SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]
_CLAUSE = re.compile(r'\s*([\w.]+)\s*(=~|>=|=)\s*(one_of\((?:[^()"]|"[^"]*")*\)|"[^"]*"|\w+)\s*')


def clauses(filter_text: str) -> Iterator[tuple[str, str, list[str]]]:
    position = 0
    while position < len(filter_text):
        match = _CLAUSE.match(filter_text, position)
        assert match, f"unparsed filter text: {filter_text[position:]!r}"
        field, op, raw = match.groups()
        values = re.findall(r'"([^"]*)"', raw) if raw.startswith(("one_of", '"')) else [raw]
        yield field, op, values
        position = match.end()
        if filter_text.startswith("AND", position):
            position += 3


def matches(filter_text: str, sample: dict[str, str]) -> bool:
    for field, op, values in clauses(filter_text):
        value = sample.get(field)
        if value is None:
            return False
        if op == "=" and value not in values:
            return False
        if op == "=~" and not re.search(values[0], value):
            return False
        if op == ">=" and SEVERITIES.index(value) < SEVERITIES.index(values[0]):
            return False
    return True


# ---- signals the code produces ------------------------------------------------------------------------
class RecordingMetricServiceClient:
    """Stands in for monitoring_v3.MetricServiceClient; keeps every series it is asked to write."""

    def __init__(self) -> None:
        self.series: list[Any] = []

    @staticmethod
    def common_project_path(project: str) -> str:
        return f"projects/{project}"

    def create_metric_descriptor(self, request: Any) -> Any:
        return request.metric_descriptor

    def create_time_series(self, request: Any) -> None:
        self.series.extend(request.time_series)


def custom_metric_series() -> list[dict[str, str]]:
    client = RecordingMetricServiceClient()
    cloud_run = Resource.create(
        {
            "service.name": "jobtrail",
            "cloud.provider": "gcp",
            "cloud.platform": "gcp_cloud_run",
            "cloud.region": "europe-west1",
            "faas.name": WORKER_SERVICE,
            "faas.instance": "drill",
        }
    )
    settings = Settings(metrics_exporter="gcp", google_cloud_project="drill")
    telemetry = Telemetry.create(settings, resource=cloud_run, monitoring_client=client)
    try:
        metrics = telemetry.metrics
        metrics.record_execution("video", "success", 0.2)
        metrics.record_execution("video", "failure", 45.0)
        metrics.record_execution("music_clips", "dlq", 1.0)
        metrics.job_started("music_clips")
        metrics.job_finished("video", JobStatus.FAILED)
        metrics.job_finished("music_clips", JobStatus.TIMED_OUT)
        metrics.job_finished("music_clips", JobStatus.SUCCEEDED)
        metrics.stale_found("music_clips", 1)
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    return [
        {
            "metric.type": ts.metric.type,
            "resource.type": ts.resource.type,
            **{f"metric.label.{k}": v for k, v in ts.metric.labels.items()},
            **{f"resource.label.{k}": v for k, v in ts.resource.labels.items()},
        }
        for ts in client.series
    ]


def pubsub_series() -> list[dict[str, str]]:
    return [
        {
            "metric.type": f"pubsub.googleapis.com/subscription/{metric}",
            "resource.type": "pubsub_subscription",
            "resource.label.subscription_id": name,
        }
        for names in SUBSCRIPTIONS.values()
        for name in names
        for metric in ("num_undelivered_messages", "oldest_unacked_message_age")
    ]


def cloud_run_series() -> list[dict[str, str]]:
    """Cloud Run's own request_count for a worker answer of 503 (a nack the worker sends)."""
    return [
        {
            "metric.type": "run.googleapis.com/request_count",
            "resource.type": "cloud_run_revision",
            "metric.label.response_code_class": "5xx",
            "resource.label.service_name": WORKER_SERVICE,
        }
    ]


def log_entries() -> list[dict[str, str]]:
    """Log lines as the code writes them, as Cloud Logging stores them from the worker's stdout."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging(Settings(), stream=buffer)
    try:
        for service in ("Suno", "video source", "Instagram"):
            pybreaker.CircuitBreaker(name=service, listeners=[_LogBreakerChanges()]).open()
        with bind_labels(traceId="acc-scn-src", jobId="job_1703616000000_abc123"):
            logging.getLogger("services.worker.engine").error("job job_1703616000000_abc123 attempt failed")
            logging.getLogger("services.worker.engine").info("delivery 1: ack (DONE)")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    entries = []
    for line in buffer.getvalue().splitlines():
        record = json.loads(line)
        labels = record.get("logging.googleapis.com/labels", {})
        entries.append(
            {
                "resource.type": "cloud_run_revision",
                "resource.labels.service_name": WORKER_SERVICE,
                "severity": record["severity"],
                "jsonPayload.message": record["message"],
                **{f"labels.{k}": v for k, v in labels.items()},
            }
        )
    return entries


def extract(extractor: str, entry: dict[str, str]) -> str:
    if m := re.fullmatch(r"EXTRACT\(([\w.]+)\)", extractor):
        return entry.get(m.group(1), "")
    m = re.fullmatch(r'REGEXP_EXTRACT\(([\w.]+), "(.*)"\)', extractor)
    assert m, extractor
    found = re.search(m.group(2), entry.get(m.group(1), ""))
    return found.group(1) if found else ""


def log_metric_series(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    series = []
    for body in LOG_METRICS.values():
        name, log_filter = resolve(text(body["name"])), resolve(text(body["filter"]))
        extractors = {k: text(v) for k, v in (body.get("label_extractors") or {}).items()}
        for entry in entries:
            if matches(log_filter, entry):
                series.append(
                    {
                        "metric.type": f"logging.googleapis.com/user/{name}",
                        "resource.type": "cloud_run_revision",
                        **{f"metric.label.{k}": extract(v, entry) for k, v in extractors.items()},
                    }
                )
    return series


@pytest.fixture(scope="module")
def signals() -> list[dict[str, str]]:
    return custom_metric_series() + pubsub_series() + cloud_run_series() + log_metric_series(log_entries())


# ---- the drill -----------------------------------------------------------------------------------------
def policy_conditions() -> Iterator[tuple[str, str, str, str | None]]:
    """(policy, condition, filter, denominator filter) for every condition of every policy."""
    for key, alert in LOCALS["alerts"].items():
        for condition in alert["conditions"]:
            denominator = condition["denominator"]
            yield (
                text(key),
                text(condition["display_name"]),
                resolve(text(condition["filter"])),
                None if denominator is None else resolve(text(denominator)),
            )
    for name, policy in resources(ALERTS, "google_monitoring_alert_policy").items():
        for condition in policy["conditions"]:
            [kind] = [k for k in condition if k.startswith("condition_")]
            [body] = condition[kind]
            yield name, text(condition["display_name"]), resolve(text(body["filter"])), None


CONDITIONS = list(policy_conditions())


def test_the_drill_reads_every_policy_including_seed_004s():
    policies = {policy for policy, *_ in CONDITIONS}
    assert {"worker-failures", "action-duration", "backlog", "worker_silent", "suno-outage"} <= policies
    assert WORKER_SERVICE in SERVICES
    assert VARS["metric_prefix"] == CLOUD_MONITORING_PREFIX


@pytest.mark.parametrize(
    "policy,condition,filter_text,denominator", CONDITIONS, ids=[f"{p}: {c}" for p, c, _, _ in CONDITIONS]
)
def test_every_alert_condition_matches_a_signal_the_code_emits(
    signals, policy, condition, filter_text, denominator
):
    assert any(matches(filter_text, s) for s in signals), (
        f"{policy} / {condition} can never fire: {filter_text}"
    )
    if denominator is not None:
        assert any(matches(denominator, s) for s in signals), f"{policy} / {condition}: denominator never set"


def test_a_suno_breaker_opening_fires_the_suno_outage_alert_and_names_match_with_spaces(signals):
    [breaker] = [c for c in CONDITIONS if c[0] == "suno-outage" and "breaker" in c[1]]
    fired = [s for s in signals if matches(breaker[2], s)]
    assert [s["metric.label.external_service"] for s in fired] == ["Suno"]
    opened = {s.get("metric.label.external_service") for s in signals if "breaker-open" in s["metric.type"]}
    assert opened == {"Suno", "video source", "Instagram"}
