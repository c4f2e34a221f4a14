"""The processing step (Cloud Run in production): turns a downloaded video into a prepared one."""

from __future__ import annotations

import time

import requests
from pydantic import BaseModel, ConfigDict

from services.external.resilience import ResilientHttp, Sleep
from services.settings import Settings


class Prepared(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    location: str
    duration_seconds: float
    # What the processing cost in compute time; the job's cost is computed from it.
    compute_seconds: float


class ProcessorClient:
    def __init__(
        self, settings: Settings, session: requests.Session | None = None, *, sleep: Sleep = time.sleep
    ) -> None:
        self.http = ResilientHttp(
            settings,
            service="processor",
            code_prefix="PROCESSOR",
            base_url=settings.processor_url,
            session=session,
            sleep=sleep,
        )

    def process(self, location: str, job_id: str) -> Prepared:
        # Safe to retry: the output path is derived from the job's id.
        response = self.http.request("POST", "/process", json={"location": location, "job_id": job_id})
        return self.http.parse(response, Prepared, method="POST", path="/process")

    def close(self) -> None:
        self.http.close()
