"""Instagram publishing: one call that posts a prepared video and returns its media container.

A publish must never happen twice for one job, yet a timed-out publish has to be retried. Every
request carries an ``Idempotency-Key`` derived from the job id; the service answers a repeated key
with the first result instead of posting again.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict

from services.external.resilience import ResilientHttp, Sleep
from services.settings import Settings

IDEMPOTENCY_HEADER = "Idempotency-Key"


def publish_idempotency_key(job_id: str) -> str:
    return f"publish-{job_id}"


class Published(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    media_container_id: str
    permalink: str


class InstagramClient:
    def __init__(
        self, settings: Settings, session: requests.Session | None = None, *, sleep: Sleep = time.sleep
    ) -> None:
        self.http = ResilientHttp(
            settings,
            service="Instagram",
            code_prefix="INSTAGRAM",
            base_url=settings.instagram_url,
            session=session,
            sleep=sleep,
        )

    def publish(self, account_id: str, location: str, caption: str, job_id: str) -> Published:
        path = f"/{quote(account_id, safe='')}/media_publish"
        response = self.http.request(
            "POST",
            path,
            json={"location": location, "caption": caption, "job_id": job_id},
            headers={IDEMPOTENCY_HEADER: publish_idempotency_key(job_id)},
            # The key makes a repeat harmless, so even a publish that may have gone through is retried.
            idempotent=True,
        )
        return self.http.parse(response, Published, method="POST", path=path)

    def close(self) -> None:
        self.http.close()
