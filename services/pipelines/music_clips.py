"""Music Clips: a Suno generation that ends by callback, or by polling when no callback comes.

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
from services.pipelines.spec import PipelineSpec, Stage
from services.pipelines.steps import NonRetryableError, Step, StepContext, StepResult

MUSIC_CLIPS = PipelineSpec(
    name="music_clips",
    stages=(
        Stage("STAGE_10_REQUEST_ACCEPTED", "Запрос принят, отправляем запрос в Suno...", timeout_seconds=600),
        Stage("STAGE_20_SUNO_REQUEST_SENT", "Запрос отправлен в Suno...", timeout_seconds=600),
        Stage(
            "STAGE_30_SUNO_TASK_CREATED", "Задача создана в Suno, ожидаем генерацию...", timeout_seconds=600
        ),
        Stage(
            "STAGE_40_SUNO_PENDING",
            "Генерация музыки в процессе (PENDING/GENERATING)...",
            timeout_seconds=600,
        ),
        Stage("STAGE_50_SUNO_SUCCESS", "Музыка сгенерирована успешно!", timeout_seconds=0),
    ),
    failed=Stage("STAGE_90_FAILED", "Ошибка при генерации", timeout_seconds=0),
    timed_out=Stage("STAGE_99_TIMEOUT", "Превышено время ожидания", timeout_seconds=0),
    cancelled=Stage("STAGE_95_CANCELLED", "Отменено", timeout_seconds=0),
    topic="music-jobs",
    max_duration_seconds=600,
    # Past STAGE_20 nothing runs in the worker (Suno owns the task), so a retry asks Suno again.
    retry_from="STAGE_10_REQUEST_ACCEPTED",
    attempt_fields=("suno_task_id",),
    timeout_error_text=(
        "Превышено время ожидания генерации (10 минут). Проверьте статус в Suno или попробуйте снова."
    ),
)


CALLBACK_URL_NOT_CONFIGURED = "CALLBACK_URL_NOT_CONFIGURED"
CALLBACK_URL_MESSAGE = "Callback URL not configured. Set PUBLIC_BASE_URL environment variable."


def default_prompt(channel_id: str) -> str:
    return f"An original instrumental music clip for channel {channel_id}"


def request_generation(ctx: StepContext) -> StepResult:
    """Start the Suno generation. Not idempotent on Suno's side (each call spends credits): a crash
    between Suno's answer and the STAGE_30 commit makes the redelivery start a second task."""
    callback_url = suno_callback_url(ctx.rt.settings, ctx.job)
    if callback_url is None:
        raise NonRetryableError(CALLBACK_URL_NOT_CONFIGURED, CALLBACK_URL_MESSAGE)
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
