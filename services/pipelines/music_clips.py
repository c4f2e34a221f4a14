"""Music Clips: a Suno generation that ends by callback, or by polling when no callback comes.

Stage names and progress texts are the ones the existing front end shows (seed 002).
"""

from __future__ import annotations

from services.pipelines.spec import PipelineSpec, Stage

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
)
