"""One notification -> every configured channel, each at most once per incident and state.

Cloud Monitoring may send the same notification more than once (retries, several policies'
channels pointing here, a re-notification). Each (incident, state, channel) is claimed before it is
sent; a failed send gives its claim back, so a later notification of the same incident retries just
the channels that did not get it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from google.api_core.exceptions import GoogleAPIError

from services.alerting.channels import Channel, DeliveryError, channels_from_settings
from services.alerting.message import AlertMessage, build_message
from services.alerting.models import MonitoringNotification
from services.errors import JobtrailError
from services.jobs.repository import JobRepository
from services.settings import Settings

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "duplicate", "failed"]


class AlertChannelsNotConfigured(JobtrailError):
    """Neither Telegram nor Slack credentials are set: an alert would vanish silently."""

    code = "ALERT_CHANNELS_NOT_CONFIGURED"
    http_status = 503


class AlertClaims(Protocol):
    def claim(self, key: str) -> bool:
        """True for the first claim of ``key``, False for every later one."""

    def release(self, key: str) -> None:
        """Forget a claim whose delivery failed."""


class RepositoryClaims:
    """Claims stored in Firestore through the repository (shared by every relay instance).

    Takes a repository factory so that the Firestore client is built on the first claim, not
    when the relay is: a request refused for its token never touches Firestore.
    """

    def __init__(self, repo: Callable[[], JobRepository]) -> None:
        self._repo = repo

    def claim(self, key: str) -> bool:
        try:
            return self._repo().claim_alert(key)
        except GoogleAPIError as exc:
            # A duplicate alert is a nuisance; a lost one is an outage nobody hears about.
            log.warning("alert dedup unavailable (%s); delivering without it", type(exc).__name__)
            return True

    def release(self, key: str) -> None:
        try:
            self._repo().release_alert(key)
        except GoogleAPIError as exc:
            log.warning(
                "could not release alert claim (%s); a retry of it will be skipped", type(exc).__name__
            )


class InMemoryClaims:
    """Claims of one process: for tests and the local stack without Firestore."""

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._keys.discard(key)


@dataclass(frozen=True)
class ChannelOutcome:
    channel: str
    outcome: Outcome
    error_code: str | None = None
    error: str | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"channel": self.channel, "outcome": self.outcome}
        if self.error_code:
            body |= {"errorCode": self.error_code, "error": self.error}
        return body


@dataclass(frozen=True)
class RelayReport:
    incident_id: str
    state: str
    outcomes: tuple[ChannelOutcome, ...]

    @property
    def failed(self) -> bool:
        return any(o.outcome == "failed" for o in self.outcomes)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "success": not self.failed,
            "ok": not self.failed,
            "incidentId": self.incident_id,
            "state": self.state,
            "channels": [o.to_body() for o in self.outcomes],
        }
        if self.failed:
            body |= {
                "error": "ALERT_DELIVERY_FAILED",
                "message": "at least one channel did not get the alert",
            }
        return body


class AlertRelay:
    def __init__(self, settings: Settings, channels: Sequence[Channel], claims: AlertClaims) -> None:
        self.settings = settings
        self.channels = tuple(channels)
        self.claims = claims

    def relay(self, notification: MonitoringNotification) -> RelayReport:
        if not self.channels:
            raise AlertChannelsNotConfigured(
                "no alert channel is configured (TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, or SLACK_WEBHOOK_URL)"
            )
        incident = notification.incident
        message = build_message(incident, self.settings)
        key = notification.dedup_key
        # In parallel: one slow chat service must not use up the other's share of the request time.
        with ThreadPoolExecutor(max_workers=len(self.channels), thread_name_prefix="alert") as pool:
            outcomes = tuple(pool.map(lambda channel: self._deliver(channel, key, message), self.channels))
        report = RelayReport(incident.incident_id, incident.state, outcomes)
        log.log(
            logging.ERROR if report.failed else logging.INFO,
            "alert %s (%s) relayed: %s",
            incident.policy_name or incident.incident_id,
            incident.state,
            ", ".join(f"{o.channel}={o.outcome}" for o in outcomes),
            extra={"incident_id": incident.incident_id, "incident_state": incident.state},
        )
        return report

    def _deliver(self, channel: Channel, key: str, message: AlertMessage) -> ChannelOutcome:
        claim = f"{key}:{channel.name}"
        if not self.claims.claim(claim):
            return ChannelOutcome(channel.name, "duplicate")
        try:
            channel.send(message)
        except DeliveryError as exc:
            self.claims.release(claim)
            return ChannelOutcome(channel.name, "failed", exc.code, exc.message)
        return ChannelOutcome(channel.name, "delivered")


_relay: AlertRelay | None = None
_relay_lock = threading.Lock()


def get_relay() -> AlertRelay:
    """The relay of this instance, built on first use from the shared runtime."""
    global _relay
    with _relay_lock:
        if _relay is None:
            from services.runtime import get_runtime

            rt = get_runtime()
            _relay = AlertRelay(
                rt.settings, channels_from_settings(rt.settings), RepositoryClaims(lambda: rt.repo)
            )
        return _relay
