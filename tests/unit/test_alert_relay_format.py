"""How an incident reads in Telegram and Slack: escaping, links, truncation."""

from __future__ import annotations

from typing import Any

from services.alerting.message import SUMMARY_MAX_CHARS, TELEGRAM_MAX_CHARS, build_message, runbook_url
from services.alerting.models import Incident
from services.settings import Settings

SETTINGS = Settings(
    google_cloud_project="jobtrail-test", api_base_url="https://api.example/", metrics_exporter="none"
)


def incident(**fields: Any) -> Incident:
    base: dict[str, Any] = {
        "incident_id": "0.abc",
        "state": "open",
        "policy_name": "jobtrail (dev): DLQ not empty",
        "scoping_project_id": "jobtrail-dev",
        "metric": {"type": "pubsub.googleapis.com/subscription/num_undelivered_messages", "labels": {}},
        "resource": {"type": "pubsub_subscription", "labels": {"subscription_id": "jt-dev-dlq-parking-hold"}},
    }
    base.update(fields)
    return Incident.model_validate(base)


def link_labels(message: Any) -> list[str]:
    return [link.label for link in message.links]


def test_payload_text_cannot_inject_markup_into_either_chat() -> None:
    message = build_message(
        incident(
            policy_name="<b>boom</b> & co",
            summary="value <script>alert(1)</script>",
            metric={"type": "m", "labels": {"traceId": 'x"><a href="evil">'}},
        ),
        SETTINGS,
    )

    telegram = message.telegram_html()
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; co" in telegram
    assert "&lt;script&gt;" in telegram
    assert 'href="evil"' not in telegram
    slack = message.slack_text()
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; co" in slack
    assert "<script>" not in slack


def test_without_trace_or_job_labels_there_are_no_job_or_log_links() -> None:
    message = build_message(incident(url="https://console.example/incident"), SETTINGS)

    assert link_labels(message) == ["Incident"]
    assert ("Resource", "subscription_id=jt-dev-dlq-parking-hold") in message.facts


def test_a_job_label_alone_links_the_job_and_its_logs_by_job_id() -> None:
    message = build_message(
        incident(resource={"type": "generic_task", "labels": {"jobId": "job_1_aa"}}), SETTINGS
    )

    links = {link.label: link.url for link in message.links}
    assert links["Job"] == "https://api.example/jobs/job_1_aa"
    assert "Jobs of trace" not in links
    assert links["Logs"] == (
        "https://console.cloud.google.com/logs/query;query=labels.jobId%3D%22job_1_aa%22?project=jobtrail-dev"
    )


def test_quotes_in_a_trace_id_stay_inside_the_logs_filter_literal() -> None:
    message = build_message(incident(metric={"type": "m", "labels": {"trace_id": 'a"b'}}), SETTINGS)

    [logs] = [link.url for link in message.links if link.label == "Logs"]
    # labels.traceId="a\"b"
    assert "query=labels.traceId%3D%22a%5C%22b%22" in logs


def test_without_an_api_url_the_logs_link_remains() -> None:
    settings = SETTINGS.model_copy(update={"api_base_url": None})

    message = build_message(
        incident(metric={"type": "m", "labels": {"traceId": "t1", "jobId": "j1"}}), settings
    )

    assert link_labels(message) == ["Logs"]


def test_the_runbook_is_the_first_link_of_the_documentation() -> None:
    documented = incident(
        documentation={
            "content": "See the [runbook](https://github.com/acme/jobtrail/blob/main/runbooks/backlog.md)."
        }
    )

    assert runbook_url(documented) == "https://github.com/acme/jobtrail/blob/main/runbooks/backlog.md"
    assert runbook_url(incident()) is None


def test_a_closed_incident_shows_when_it_ended_and_a_value_without_threshold() -> None:
    message = build_message(
        incident(state="closed", started_at=1767225600, ended_at=1767229200, observed_value=0), SETTINGS
    )

    facts = dict(message.facts)
    assert facts["State"] == "CLOSED"
    assert facts["Started"] == "2026-01-01 00:00:00 UTC"
    assert facts["Ended"] == "2026-01-01 01:00:00 UTC"
    assert facts["Value"] == "0"
    assert message.telegram_html().startswith("\N{WHITE HEAVY CHECK MARK}")
    assert message.slack_text().startswith(":white_check_mark:")


def test_a_huge_summary_is_cut_to_fit_telegram() -> None:
    message = build_message(incident(summary="x" * 20_000), SETTINGS)

    assert len(message.summary) == SUMMARY_MAX_CHARS
    assert len(message.telegram_html()) <= TELEGRAM_MAX_CHARS
    assert message.summary.endswith("\N{HORIZONTAL ELLIPSIS}")
