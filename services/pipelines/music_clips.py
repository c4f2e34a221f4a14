"""Music Clips' steps (stages: declared/music_clips.yaml): a Suno generation that ends by
callback, or by polling when no callback comes.

Stage names and progress texts are the ones the existing front end shows (seed 002).

The worker takes a job from STAGE_10 to STAGE_40 in two steps, so each step starts from the stage
the previous one committed and a redelivery after a crash resumes cleanly:
  generate  20_SUNO_REQUEST_SENT (before the call) -> 30_SUNO_TASK_CREATED (sunoTaskId stored)
  wait      30_SUNO_TASK_CREATED -> 40_SUNO_PENDING (first poll scheduled)
From there the Suno callback or the poller (services/music_clips) finishes the job, and the
sweeper times it out when neither does within max_duration_seconds.
"""

from __future__ import annotations

from datetime import timedelta

from services.music_clips.config import poll_delay_seconds, suno_callback_url
from services.pipelines.registry import get_pipeline
from services.pipelines.steps import NonRetryableError, RetryLater, Step, StepContext, StepResult

MUSIC_CLIPS = get_pipeline("music_clips")  # declared in declared/music_clips.yaml


CALLBACK_URL_NOT_CONFIGURED = "CALLBACK_URL_NOT_CONFIGURED"
CALLBACK_URL_MESSAGE = "Callback URL not configured. Set PUBLIC_BASE_URL environment variable."


def default_prompt(channel_id: str) -> str:
    return f"An original instrumental music clip for channel {channel_id}"


SUNO_ANSWER_PENDING = "SUNO_ANSWER_PENDING"


def request_generation(ctx: StepContext) -> StepResult:
    """Start the Suno generation, once per attempt.

    Suno's generate is not idempotent (each call spends credits), and its answer can be lost after
    the task was created (a timeout, a crash before the STAGE_30 commit), or two deliveries of one
    attempt can run this step at once. So the attempt claims the ask in a transaction
    (``suno_requested_at``) before asking: a delivery that finds the claim taken and no task id
    waits for the task's callback, and asks again only once ``suno_lost_answer_wait_seconds``
    have passed without one. Any callback of the task names the job and attempt, and stores its
    task id (callback.py); the redelivery then carries on with that task."""
    repo, settings = ctx.rt.repo, ctx.rt.settings
    callback_url = suno_callback_url(settings, ctx.job)
    if callback_url is None:
        raise NonRetryableError(CALLBACK_URL_NOT_CONFIGURED, CALLBACK_URL_MESSAGE)
    lost_before = repo.clock() - timedelta(seconds=settings.suno_lost_answer_wait_seconds)
    job, claimed = repo.claim_suno_generation(ctx.job.job_id, unanswered_since=lost_before)
    if job.suno_task_id is not None:
        # The earlier call's task: its credits were spent, though that delivery could not say so.
        return StepResult(
            fields={"suno_task_id": job.suno_task_id},
            usage={"suno_credits": float(settings.suno_credits_per_generation)},
        )
    if not claimed:
        asked = job.suno_requested_at
        waited = (repo.clock() - asked).total_seconds() if asked is not None else 0.0
        raise RetryLater(
            SUNO_ANSWER_PENDING,
            f"Suno was asked {waited:.0f}s ago for this attempt and has not answered it here yet; "
            "waiting for its task id or callback",
        )
    params = ctx.job.input
    task_id = ctx.rt.suno.generate(
        str(params.get("prompt") or default_prompt(ctx.job.source_id)),
        callback_url,
        style=str(params.get("style") or ""),
        title=str(params.get("title") or ""),
        instrumental=bool(params.get("instrumental", False)),
    )
    return StepResult(
        fields={"suno_task_id": task_id},
        usage={"suno_credits": float(ctx.rt.settings.suno_credits_per_generation)},
    )


def schedule_first_poll(ctx: StepContext) -> StepResult:
    """The poller's safety net, armed before the job reads as pending: if no callback ever comes,
    record-info is asked from suno_poll_interval_seconds on."""
    repo = ctx.rt.repo
    first = repo.clock() + timedelta(seconds=poll_delay_seconds(ctx.rt.settings, 0))
    repo.schedule_suno_poll(ctx.job.job_id, first, polls=0)
    return StepResult()


MUSIC_CLIPS_STEPS = (
    Step(
        "suno_generate",
        start="STAGE_20_SUNO_REQUEST_SENT",
        done="STAGE_30_SUNO_TASK_CREATED",
        handler=request_generation,
    ),
    Step(
        "suno_wait",
        start="STAGE_30_SUNO_TASK_CREATED",
        done="STAGE_40_SUNO_PENDING",
        handler=schedule_first_poll,
    ),
)
