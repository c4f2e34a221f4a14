"""The video pipeline: webhook -> download -> Pub/Sub -> Cloud Run processing -> Instagram publish."""

from __future__ import annotations

from services.pipelines.spec import PipelineSpec, Stage

VIDEO = PipelineSpec(
    name="video",
    stages=(
        Stage("received", "Webhook received, waiting for a worker", timeout_seconds=15 * 60),
        Stage("downloading", "Downloading the source video", timeout_seconds=10 * 60),
        Stage("downloaded", "Downloaded, waiting for processing", timeout_seconds=15 * 60),
        Stage("processing", "Processing the video", timeout_seconds=20 * 60),
        Stage("processed", "Prepared video ready, waiting to publish", timeout_seconds=15 * 60),
        Stage("publishing", "Publishing the Instagram media container", timeout_seconds=10 * 60),
        Stage("published", "Published", timeout_seconds=0),
    ),
    failed=Stage("failed", "Failed", timeout_seconds=0),
    timed_out=Stage("timed_out", "Timed out: no progress within the stage's limit", timeout_seconds=0),
    cancelled=Stage("cancelled", "Cancelled", timeout_seconds=0),
    topic="video-jobs",
)
