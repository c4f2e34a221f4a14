"""The dead-letters page's API: dead letters grouped by pipeline, cause and day; a preview and a
replay of a selection (some jobs, or all matching a filter) that the page repeats, ``limit`` jobs a
call, showing its progress; and the edit of a dead letter's input, checked against its pipeline's
input model, shown as a diff first. A plain user sees and acts on their own dead letters only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, RootModel, Strict

from services.api.jobs import JOB_ID_SCHEMA
from services.api.routing import ApiBlueprint, Call
from services.control import edit_dead_letter_input, input_diff, replay_selected, require_dead_lettered
from services.jobs.models import JOB_ID_PATTERN, CamelModel, Job
from services.pipelines.inputs import checked_input
from services.reads.dead_letters import dead_letter_board, preview_of, selected_dead_letters
from services.reads.jobs import visible_job
from services.reads.queries import DeadLetterBoardFilter, DeadLetterBoardQuery
from services.reads.views import DeadLetterBoard, DeadLetterPreview, Envelope

bp = ApiBlueprint("dead_letters", __name__)

JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, max_length=128)]
MAX_SELECTED_IDS = 200


class SelectJobs(CamelModel):
    """These dead letters (each one the caller may see)."""

    model_config = ConfigDict(extra="forbid")
    job_ids: list[JobId] = Field(min_length=1, max_length=MAX_SELECTED_IDS)


class SelectMatching(CamelModel):
    """Every dead letter matching the filter (a plain user's own)."""

    model_config = ConfigDict(extra="forbid")
    filter: DeadLetterBoardFilter


class Selection(RootModel[SelectJobs | SelectMatching]):
    """Some dead letters by id, or all matching a filter."""

    def resolve(self, call: Call) -> list[Job]:
        chosen = self.root
        if isinstance(chosen, SelectJobs):
            return selected_dead_letters(call.rt, call.principal, job_ids=chosen.job_ids, flt=None)
        return selected_dead_letters(call.rt, call.principal, job_ids=None, flt=chosen.filter)


class PreviewRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")
    selection: Selection


class ReplayRequest(PreviewRequest):
    # Strict: a time is an RFC 3339 string, not a number of seconds.
    as_of: Annotated[AwareDatetime, Strict()] = Field(
        description="The preview's asOf: jobs changed after it (replayed and dead-lettered again) are skipped."
    )
    limit: int = Field(
        50, ge=1, le=200, description="Jobs this call may replay; call again while remaining > 0."
    )


class ReplayFailure(CamelModel):
    job_id: str
    error: str


class SelectionReplayed(Envelope):
    """What this call did; ``remaining`` of the selection are left for the next call."""

    mode: Literal["selection"] = "selection"
    replay_id: str
    processed: int
    replayed: int
    skipped: int = Field(description="Replayed by someone else, or changed since asOf (each job once).")
    failed: int
    remaining: int
    failures: list[ReplayFailure]


class InputEdit(CamelModel):
    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any] = Field(
        description="The whole new input, as the job's pipeline's input model has it."
    )


class InputChange(CamelModel):
    field: str = Field(description="Dotted path in the input (camelCase, as stored).")
    change: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class InputDiff(Envelope):
    """The input as it would be saved (normalized by the pipeline's model) and what changes."""

    job_id: str
    pipeline: str
    input: dict[str, Any]
    changes: list[InputChange]
    saved: bool = Field(description="False for a check, true once saved (and audited).")


@bp.operation(
    "GET",
    "/api/dead-letters",
    summary="Dead letters grouped by pipeline, cause and day, with counts; the matching ones listed",
    query=DeadLetterBoardQuery,
    responses={200: DeadLetterBoard},
    errors=(400, 401, 403),
)
def get_dead_letter_board(call: Call, query: DeadLetterBoardQuery) -> DeadLetterBoard:
    """Non-admins see their own dead letters only (userId is theirs, or absent)."""
    return dead_letter_board(call.rt, call.principal, query)


@bp.operation(
    "POST",
    "/api/dead-letters/preview",
    summary="How many dead letters a replay of the selection takes, by pipeline and subscription",
    body=PreviewRequest,
    responses={200: DeadLetterPreview},
    errors=(400, 401, 403, 404),
)
def preview_replay(call: Call, body: PreviewRequest) -> DeadLetterPreview:
    """A job id the caller may not see answers 404, like a missing one."""
    return preview_of(call.rt, body.selection.resolve(call))


@bp.operation(
    "POST",
    "/api/dead-letters/replay",
    summary="Replay a selection of dead letters, up to limit per call (call again while remaining > 0)",
    body=ReplayRequest,
    responses={200: SelectionReplayed},
    errors=(400, 401, 403, 404),
)
def replay_selection(call: Call, body: ReplayRequest) -> SelectionReplayed:
    """Each job is replayed once however many calls overlap (two operators, two clicks); every
    job replayed is audited, and so is every call."""
    jobs = body.selection.resolve(call)
    batch = jobs[: body.limit]
    replay_id = uuid.uuid4().hex[:12]
    report = replay_selected(
        call.rt, batch, actor=call.principal.actor, as_of=body.as_of, replay_id=replay_id
    )
    return SelectionReplayed(
        replay_id=replay_id,
        processed=report.processed,
        replayed=report.replayed,
        skipped=report.skipped,
        failed=report.failed,
        remaining=len(jobs) - len(batch),
        failures=[ReplayFailure(job_id=f["jobId"], error=f["error"]) for f in report.failures],
    )


@bp.operation(
    "POST",
    "/api/dead-letters/<jobId>/input/check",
    summary="Check a new input for a dead letter against its pipeline's input model; the diff, nothing saved",
    body=InputEdit,
    responses={200: InputDiff},
    errors=(400, 401, 404, 409),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def check_input(call: Call, job_id: str, body: InputEdit) -> InputDiff:
    """400 INVALID_INPUT with fieldErrors (field, message, type) when the input does not fit;
    409 NOT_DEAD_LETTERED when the job is not (or no longer) a dead letter."""
    job = visible_job(call.rt, call.principal, job_id)
    checked = checked_input(job.pipeline, body.input)
    require_dead_lettered(job)
    return InputDiff(
        job_id=job.job_id,
        pipeline=job.pipeline,
        input=checked,
        changes=[InputChange.model_validate(c) for c in input_diff(job.input, checked)],
        saved=False,
    )


@bp.operation(
    "PUT",
    "/api/dead-letters/<jobId>/input",
    summary="Replace a dead letter's input (checked against its pipeline's input model; audited)",
    body=InputEdit,
    responses={200: InputDiff},
    errors=(400, 401, 404, 409),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def put_input(call: Call, job_id: str, body: InputEdit) -> InputDiff:
    """The audit record holds the input before and after (secrets redacted). Replay the job
    afterwards with POST /api/dead-letters/replay. 409 when it is not a dead letter, or was
    replayed or edited by someone else meanwhile."""
    job = visible_job(call.rt, call.principal, job_id)
    checked = checked_input(job.pipeline, body.input)
    edited, changes = edit_dead_letter_input(call.rt, job, checked, actor=call.principal.actor)
    return InputDiff(
        job_id=edited.job_id,
        pipeline=edited.pipeline,
        input=edited.input,
        changes=[InputChange.model_validate(c) for c in changes],
        saved=True,
    )
