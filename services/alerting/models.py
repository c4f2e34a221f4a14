"""The body Cloud Monitoring posts to a webhook notification channel (schema version 1.2).

Only the fields the relay reads are declared; everything else is ignored, so later additions to
the payload do not break the relay.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class IncidentMetric(_Lenient):
    type: str = ""
    display_name: str = Field("", alias="displayName")
    labels: dict[str, str] = Field(default_factory=dict)


class IncidentResource(_Lenient):
    type: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class IncidentDocumentation(_Lenient):
    content: str = ""
    mime_type: str = ""
    subject: str = ""


class Incident(_Lenient):
    incident_id: str = Field(min_length=1, max_length=500)
    scoping_project_id: str = ""
    url: str = ""
    state: Literal["open", "closed"]
    # Epoch seconds; ended_at is null (or 0) while the incident is open.
    started_at: int | None = None
    ended_at: int | None = None
    summary: str = ""
    policy_name: str = ""
    condition_name: str = ""
    metric: IncidentMetric = Field(default_factory=IncidentMetric)
    resource: IncidentResource = Field(default_factory=IncidentResource)
    # Cloud Monitoring sends both as strings ("0.35"), numbers in older payloads.
    observed_value: str | int | float | None = None
    threshold_value: str | int | float | None = None
    documentation: IncidentDocumentation = Field(default_factory=IncidentDocumentation)

    def label(self, *names: str) -> str | None:
        """The first of ``names`` found in the metric's labels, then in the resource's."""
        for labels in (self.metric.labels, self.resource.labels):
            for name in names:
                if labels.get(name):
                    return labels[name]
        return None

    @property
    def trace_id(self) -> str | None:
        return self.label("traceId", "trace_id")

    @property
    def job_id(self) -> str | None:
        return self.label("jobId", "job_id")


class MonitoringNotification(_Lenient):
    version: str = "1.2"
    incident: Incident

    @property
    def dedup_key(self) -> str:
        """The same incident in the same state is one notification, however often it is sent."""
        return f"{self.incident.incident_id}:{self.incident.state}"
