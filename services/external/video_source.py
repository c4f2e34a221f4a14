"""The video source: fetches a video by URL into our storage and says where it put it."""

from __future__ import annotations

import time

import requests
from pydantic import BaseModel, ConfigDict

from services.external.resilience import ResilientHttp, Sleep
from services.settings import Settings


class Download(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    location: str
    size_bytes: int


class VideoSourceClient:
    def __init__(
        self, settings: Settings, session: requests.Session | None = None, *, sleep: Sleep = time.sleep
    ) -> None:
        self.http = ResilientHttp(
            settings,
            service="video source",
            code_prefix="VIDEO_SOURCE",
            base_url=settings.video_source_url,
            session=session,
            sleep=sleep,
        )

    def download(self, video_url: str, job_id: str) -> Download:
        # Safe to retry: the source stores the file under the job's id, so a repeat overwrites.
        response = self.http.request("POST", "/download", json={"video_url": video_url, "job_id": job_id})
        return self.http.parse(response, Download, method="POST", path="/download")

    def close(self) -> None:
        self.http.close()
