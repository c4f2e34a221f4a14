"""The video pipeline's steps: webhook -> download -> Pub/Sub -> Cloud Run processing -> Instagram
publish. Its stages are declared in declared/video.yaml."""

from __future__ import annotations

from services.pipelines.registry import get_pipeline
from services.pipelines.steps import NonRetryableError, Step, StepContext, StepResult

VIDEO = get_pipeline("video")  # declared in declared/video.yaml


def download(ctx: StepContext) -> StepResult:
    video_url = ctx.job.input.get("videoUrl")
    if not video_url:
        raise NonRetryableError("MISSING_VIDEO_URL", "the job has no videoUrl to download")
    got = ctx.rt.video_source.download(video_url, ctx.job.job_id)
    return StepResult(
        fields={"result": {**ctx.job.result, "downloaded": got.location}},
        usage={"egress_bytes": float(got.size_bytes)},
        artifacts={"downloaded": got.location},
    )


def process(ctx: StepContext) -> StepResult:
    prepared = ctx.rt.processor.process(ctx.job.result["downloaded"], ctx.job.job_id)
    return StepResult(
        fields={
            "result": {
                **ctx.job.result,
                "prepared": prepared.location,
                "durationSeconds": prepared.duration_seconds,
            }
        },
        usage={"compute_seconds": prepared.compute_seconds},
        artifacts={"prepared": prepared.location},
    )


def publish(ctx: StepContext) -> StepResult:
    caption = str(ctx.job.input.get("caption", ""))
    published = ctx.rt.instagram.publish(
        ctx.job.account_id, ctx.job.result["prepared"], caption, ctx.job.job_id
    )
    return StepResult(
        fields={
            "result": {
                **ctx.job.result,
                "mediaContainerId": published.media_container_id,
                "permalink": published.permalink,
            }
        },
        artifacts={"permalink": published.permalink},
    )


VIDEO_STEPS = (
    Step("download", start="downloading", done="downloaded", handler=download),
    Step("process", start="processing", done="processed", handler=process),
    Step("publish", start="publishing", done="published", handler=publish),
)
