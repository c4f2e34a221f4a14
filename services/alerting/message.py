"""An incident as a message a person can act on from a phone: what fired, how bad, where to look.

One ``AlertMessage`` is rendered twice: Telegram HTML (``parse_mode=HTML``) and Slack mrkdwn.
Every piece of text that came from the payload is escaped for the target format, so a label value
cannot inject markup or links.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from services.alerting.models import Incident
from services.settings import Settings

TELEGRAM_MAX_CHARS = 4096  # sendMessage rejects longer texts
SUMMARY_MAX_CHARS = 1500
# The job page (services/api/static/job.html).
JOB_PATH = "/jobs/{job_id}"
# The jobs table with its search set to the trace id (the page looks it up if not loaded).
JOBS_BY_TRACE_PATH = "/"
_URL = re.compile(r"https?://[^\s<>()\[\]\"']+")
# Resource labels worth showing: they say which queue or service the alert is about.
_RESOURCE_LABELS = ("subscription_id", "topic_id", "service_name", "function_name", "job")


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class AlertMessage:
    title: str
    open: bool
    facts: tuple[tuple[str, str], ...]
    summary: str
    links: tuple[Link, ...]

    def telegram_html(self) -> str:
        icon = "\N{LARGE RED CIRCLE}" if self.open else "\N{WHITE HEAVY CHECK MARK}"
        lines = [f"{icon} <b>{html.escape(self.title)}</b>"]
        lines += [f"<b>{html.escape(k)}:</b> {html.escape(v)}" for k, v in self.facts]
        if self.summary:
            lines += ["", html.escape(self.summary)]
        if self.links:
            lines.append("")
            lines.append(
                " | ".join(
                    f'<a href="{html.escape(link.url, quote=True)}">{html.escape(link.label)}</a>'
                    for link in self.links
                )
            )
        text = "\n".join(lines)
        # Only the summary can be long (it is capped), so this is a last guard, not a formatter.
        return (
            text
            if len(text) <= TELEGRAM_MAX_CHARS
            else text[: TELEGRAM_MAX_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"
        )

    def slack_text(self) -> str:
        icon = ":red_circle:" if self.open else ":white_check_mark:"
        lines = [f"{icon} *{_slack_escape(self.title)}*"]
        lines += [f"*{_slack_escape(k)}:* {_slack_escape(v)}" for k, v in self.facts]
        if self.summary:
            lines += ["", _slack_escape(self.summary)]
        if self.links:
            lines.append("")
            lines.append(
                " | ".join(f"<{_slack_url(link.url)}|{_slack_escape(link.label)}>" for link in self.links)
            )
        return "\n".join(lines)


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats only these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def _when(epoch: int | None) -> str | None:
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):  # outside what a datetime holds: show it raw
        return f"epoch {epoch}"


def _value(value: str | int | float | None) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _quoted(value: str) -> str:
    """A value for a Logging query string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def logs_url(console_base_url: str, project: str, log_filter: str) -> str:
    """Logs Explorer with ``log_filter`` typed in (the console's own URL format)."""
    return (
        f"{console_base_url}/logs/query;query={quote(log_filter, safe='')}?{urlencode({'project': project})}"
    )


def runbook_url(incident: Incident) -> str | None:
    """The first link of the policy's documentation: Terraform puts the runbook there."""
    found = _URL.search(incident.documentation.content)
    return found.group(0).rstrip(".,;") if found else None


def build_message(incident: Incident, settings: Settings) -> AlertMessage:
    is_open = incident.state == "open"
    facts: list[tuple[str, str]] = [("State", incident.state.upper())]
    if incident.condition_name:
        facts.append(("Condition", incident.condition_name))
    metric = incident.metric.display_name or incident.metric.type
    if metric:
        facts.append(("Metric", metric))
    observed, threshold = _value(incident.observed_value), _value(incident.threshold_value)
    if observed is not None:
        facts.append(("Value", f"{observed} (threshold {threshold})" if threshold is not None else observed))
    resource = ", ".join(
        f"{name}={incident.resource.labels[name]}"
        for name in _RESOURCE_LABELS
        if incident.resource.labels.get(name)
    )
    if resource:
        facts.append(("Resource", resource))
    for label, when in (("Started", _when(incident.started_at)), ("Ended", _when(incident.ended_at))):
        if when:
            facts.append((label, when))
    trace_id, job_id = incident.trace_id, incident.job_id
    if trace_id:
        facts.append(("Trace id", trace_id))
    if job_id:
        facts.append(("Job id", job_id))

    project = incident.scoping_project_id or settings.google_cloud_project
    links: list[Link] = []
    if incident.url:
        links.append(Link("Incident", incident.url))
    if runbook := runbook_url(incident):
        links.append(Link("Runbook", runbook))
    if settings.api_base_url:
        base = settings.api_base_url.rstrip("/")
        if job_id:
            links.append(Link("Job", base + JOB_PATH.format(job_id=quote(job_id, safe=""))))
        if trace_id:
            links.append(Link("Jobs of trace", f"{base}{JOBS_BY_TRACE_PATH}?{urlencode({'q': trace_id})}"))
    if trace_id:
        links.append(
            Link("Logs", logs_url(settings.console_base_url, project, f"labels.traceId={_quoted(trace_id)}"))
        )
    elif job_id:
        links.append(
            Link("Logs", logs_url(settings.console_base_url, project, f"labels.jobId={_quoted(job_id)}"))
        )

    summary = incident.summary
    if len(summary) > SUMMARY_MAX_CHARS:
        summary = summary[: SUMMARY_MAX_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return AlertMessage(
        title=incident.policy_name or "Cloud Monitoring alert",
        open=is_open,
        facts=tuple(facts),
        summary=summary,
        links=tuple(links),
    )
