"""The one module that knows Firestore paths. Nothing else calls ``.collection()``.

Layout (every collection name carries ``settings.collection_prefix``):
    jobs/{jobId}                      the job (models.Job, camelCase)
    jobs/{jobId}/events/{seq:05d}     its append-only timeline (models.JobEvent)
    idempotency/{sha256(key)}         key -> jobId, created in the same commit as the job
    executions/{messageId}-{attempt}  one record per delivery attempt (models.Execution)
    queues/{name}                     paused flag (models.QueueState)
    audit/{auditId}                   who did what (models.AuditRecord)
    alerts/{sha256(key)}              one claim per alert notification and channel (relay dedup)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.api_core.exceptions import Aborted, AlreadyExists, Conflict, FailedPrecondition
from google.api_core.exceptions import NotFound as DocumentMissing
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from services.errors import JobNotFound, NotFound, TransitionConflict
from services.jobs.models import (
    AuditRecord,
    CamelModel,
    Execution,
    ExecutionStatus,
    Job,
    JobCreate,
    JobEvent,
    QueueState,
    make_trace_id,
)
from services.jobs.state_machine import (
    Expectations,
    Plan,
    Transition,
    plan_heartbeat,
    plan_retry,
    plan_transition,
    stale_at_for,
)
from services.pipelines.registry import get_pipeline
from services.pipelines.spec import JobStatus
from services.settings import Settings
from services.telemetry import get_metrics

Clock = Callable[[], datetime]


# Reads of a job that keeps changing before a conditional write of it gives up (a transaction's
# default is 5; a conditional write's retry costs no lock wait, so a few more are cheap).
OPTIMISTIC_WRITE_ATTEMPTS = 10
_Result = TypeVar("_Result")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id(now: datetime) -> str:
    """``job_<epoch ms>_<random>``, the format the front end already shows (seed 002)."""
    return f"job_{int(now.timestamp() * 1000)}_{secrets.token_hex(4)}"


def new_request_id(now: datetime) -> str:
    """``req_<epoch ms>_<random>``, like the job ids (seed 002)."""
    return f"req_{int(now.timestamp() * 1000)}_{secrets.token_hex(3)}"


def _camel_patch(patch: dict[str, Any]) -> dict[str, Any]:
    """Model field names -> stored (camelCase) names, nested models dumped."""
    fields = Job.model_fields
    out: dict[str, Any] = {}
    for name, value in patch.items():
        alias = fields[name].alias or name if name in fields else name
        out[alias] = value.to_doc() if isinstance(value, CamelModel) else value
    return out


@dataclass(frozen=True)
class DueSunoPoll:
    job: Job
    polls: int  # how many polls of this task were claimed before
    read_at: datetime  # the job document's update time when read: the claim's precondition


@dataclass(frozen=True)
class ChangedJob:
    job: Job
    update_time: datetime  # when Firestore committed this version (tells versions of a job apart)


@dataclass(frozen=True)
class TransitionResult:
    job: Job
    applied: bool  # False: a duplicate, nothing was written
    event: JobEvent | None = None


@dataclass(frozen=True)
class QuerySpec:
    """One filtered, ordered page of a collection, as the read layer builds it (services/reads/queries.py).

    Every shape the API can build has a composite index in infra/firestore.indexes.json; a unit
    test builds each one and checks, since the emulator does not enforce indexes.
    """

    equals: tuple[tuple[str, Any], ...] = ()
    one_of: tuple[str, tuple[Any, ...]] | None = None  # field "in" values
    range_field: str | None = None
    range_from: Any = None  # >=
    range_to: Any = None  # <
    order: tuple[tuple[str, bool], ...] = ()  # (field, descending); "__name__" is the document id
    limit: int | None = None
    # The last row's ``order`` values, then its document id (unless ordered by "__name__" last).
    after: tuple[Any, ...] | None = None


class JobRepository:
    def __init__(self, db: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.retention = timedelta(days=settings.retention_days)
        self.expectations = Expectations(
            worker_seconds=settings.handler_timeout_seconds + settings.stale_after_seconds,
            grace_seconds=settings.stale_after_seconds,
        )

    # ---- paths ------------------------------------------------------------------------------
    def collection(self, name: str) -> firestore.CollectionReference:
        return self.db.collection(f"{self.settings.collection_prefix}{name}")

    def job_ref(self, job_id: str) -> firestore.DocumentReference:
        return self.collection("jobs").document(job_id)

    def events_ref(self, job_id: str) -> firestore.CollectionReference:
        return self.job_ref(job_id).collection("events")

    def idempotency_ref(self, key: str) -> firestore.DocumentReference:
        return self.collection("idempotency").document(hashlib.sha256(key.encode()).hexdigest())

    def execution_ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.collection("executions").document(execution_id)

    def queue_ref(self, name: str) -> firestore.DocumentReference:
        return self.collection("queues").document(name)

    def audit_ref(self, audit_id: str) -> firestore.DocumentReference:
        return self.collection("audit").document(audit_id)

    def alert_ref(self, key: str) -> firestore.DocumentReference:
        return self.collection("alerts").document(hashlib.sha256(key.encode()).hexdigest())

    def stream_ticket_ref(self, ticket: str) -> firestore.DocumentReference:
        # Only the ticket's hash is stored: the collection itself holds nothing that opens a stream.
        return self.collection("streamTickets").document(hashlib.sha256(ticket.encode()).hexdigest())

    def login_code_ref(self, code: str) -> firestore.DocumentReference:
        # As tickets: only the hash, so the collection holds nothing that signs anyone in.
        return self.collection("loginCodes").document(hashlib.sha256(code.encode()).hexdigest())

    # ---- jobs -------------------------------------------------------------------------------
    def create_job(
        self, new: JobCreate, *, actor: str = "system", otel_trace_id: str | None = None
    ) -> tuple[Job, bool]:
        """Create the job and its first event in one commit; (job, created).

        With an idempotency key, the key document is created in that same commit with a
        must-not-exist precondition, so of N concurrent creates exactly one commits and the others
        read back its job: no transaction, so no contention retries.
        """
        spec = get_pipeline(new.pipeline)
        now = self.clock()
        deadline = now + timedelta(seconds=spec.max_duration_seconds) if spec.max_duration_seconds else None
        job = Job(
            **new.model_dump(),
            job_id=new_job_id(now),
            trace_id=make_trace_id(new.account_id, new.scenario_id, new.source_id),
            status=spec.status_of(spec.initial.name),
            stage=spec.initial.name,
            progress_text=spec.initial.progress_text,
            created_at=now,
            updated_at=now,
            heartbeat_at=now,
            deadline_at=deadline,
            stale_at=stale_at_for(spec, spec.initial.name, now, deadline),
            event_count=1,
            last_event_at=now,
            otel_trace_id=otel_trace_id,
        )
        event = JobEvent(
            event_id="00001",
            job_id=job.job_id,
            seq=1,
            from_stage=None,
            to_stage=job.stage,
            at=now,
            duration_ms=None,
            actor=actor,
            attempt=1,
            message="created",
            expire_at=now + self.retention,
        )
        batch = self.db.batch()
        if new.idempotency_key:
            batch.create(
                self.idempotency_ref(new.idempotency_key),
                # expireAt: the TTL policy removes keys with their jobs' retention.
                {"jobId": job.job_id, "createdAt": now, "expireAt": now + self.retention},
            )
        batch.create(self.job_ref(job.job_id), job.to_doc())
        batch.create(self.events_ref(job.job_id).document(event.event_id), event.to_doc())
        try:
            batch.commit()
        except (AlreadyExists, Conflict):
            if not new.idempotency_key:
                raise
            existing = self.idempotency_ref(new.idempotency_key).get()
            return self.get_job(existing.get("jobId")), False
        return job, True

    def find_by_idempotency_key(self, key: str) -> Job | None:
        job_id = self.job_id_for_key(key)
        return self.get_job(job_id) if job_id is not None else None

    def job_id_for_key(self, key: str) -> str | None:
        """The id of the job created with idempotency key ``key``: one read, not the job's."""
        snap = self.idempotency_ref(key).get()
        return str(snap.get("jobId")) if snap.exists else None

    def get_job(
        self, job_id: str, transaction: firestore.Transaction | None = None, timeout: float | None = None
    ) -> Job:
        if timeout is not None:
            # Fail fast: a bounded read is how callers check that Firestore is reachable.
            snap = self.job_ref(job_id).get(transaction=transaction, retry=None, timeout=timeout)
        else:
            snap = self.job_ref(job_id).get(transaction=transaction)
        if not snap.exists:
            raise JobNotFound(f"Job {job_id} not found")
        return Job.model_validate(snap.to_dict())

    def find_job_by_suno_task(self, suno_task_id: str) -> Job | None:
        docs = (
            self.collection("jobs").where(filter=FieldFilter("sunoTaskId", "==", suno_task_id)).limit(1).get()
        )
        return Job.model_validate(docs[0].to_dict()) if docs else None

    # ---- Suno polling schedule (Music Clips) -------------------------------------------------
    # ``nextPollAt`` is set only while a job waits on Suno, so the poller's single-field range
    # query (automatic index) reads the jobs due for a poll and nothing else.
    # Each schedule also moves ``stuckAt``: a poll overdue by more than the grace means a stuck job.
    def schedule_suno_poll(self, job_id: str, at: datetime, polls: int = 0) -> None:
        self.job_ref(job_id).update({"nextPollAt": at, "sunoPolls": polls, "stuckAt": self._poll_overdue(at)})

    def _poll_overdue(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self.expectations.grace_seconds)

    def find_due_suno_polls(self, now: datetime, limit: int) -> list[DueSunoPoll]:
        docs = (
            self.collection("jobs")
            .where(filter=FieldFilter("nextPollAt", "<=", now))
            .order_by("nextPollAt")
            .limit(limit)
            .get()
        )
        return [
            DueSunoPoll(
                job=Job.model_validate(d.to_dict()), polls=int(d.get("sunoPolls") or 0), read_at=d.update_time
            )
            for d in docs
        ]

    def claim_suno_poll(self, due: DueSunoPoll, next_at: datetime) -> bool:
        """Move the job's next poll to ``next_at``, unless the job changed since ``due`` was read:
        of two pollers reading the same job, one claims it. False: not claimed (re-read it)."""
        try:
            self.job_ref(due.job.job_id).update(
                {"nextPollAt": next_at, "sunoPolls": due.polls + 1, "stuckAt": self._poll_overdue(next_at)},
                option=self.db.write_option(last_update_time=due.read_at),
            )
        except (FailedPrecondition, Conflict, DocumentMissing):
            return False
        return True

    def clear_suno_poll(self, job_id: str, *, unchanged_since: datetime | None = None) -> bool:
        """Remove the job's poll schedule; with ``unchanged_since`` (when the caller read the job),
        only if nothing wrote the job since, e.g. a retry's worker arming a new schedule. False:
        the job changed (or is gone), nothing was removed."""
        option = self.db.write_option(last_update_time=unchanged_since) if unchanged_since else None
        try:
            self.job_ref(job_id).update(
                {"nextPollAt": firestore.DELETE_FIELD, "sunoPolls": firestore.DELETE_FIELD}, option=option
            )
        except (FailedPrecondition, Conflict, DocumentMissing):  # changed, or deleted: nothing to poll
            return False
        return True

    def _commit_plan(self, transaction: firestore.Transaction, job_id: str, plan: Plan) -> None:
        transaction.update(self.job_ref(job_id), _camel_patch(plan.patch))
        transaction.create(self.events_ref(job_id).document(plan.event.event_id), plan.event.to_doc())

    def transition(
        self, job_id: str, t: Transition, *, only_if: Callable[[Job], bool] | None = None
    ) -> TransitionResult:
        """Move a job, writing it and its event in one transaction (see state_machine).

        ``only_if`` is asked about the job as read inside the transaction; False writes nothing
        (applied=False). The sweeper uses it so a heartbeat that lands after its query wins.
        """

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> TransitionResult:
            job = self.get_job(job_id, transaction)
            if only_if is not None and not only_if(job):
                return TransitionResult(job=job, applied=False)
            plan = plan_transition(
                get_pipeline(job.pipeline), job, t, self.clock(), self.retention, self.expectations
            )
            if plan is None:
                return TransitionResult(job=job, applied=False)
            self._commit_plan(transaction, job_id, plan)
            return TransitionResult(job=job.model_copy(update=plan.patch), applied=True, event=plan.event)

        result = run(self.db.transaction())
        if result.applied and result.job.status.is_terminal:
            # Counted here, the one write that finishes a job, whoever asked for it (worker, Suno
            # callback, poller, sweeper, DLQ analyzer, cancel): jobs_finished_total is every job.
            get_metrics().job_finished(result.job.pipeline, result.job.status)
        return result

    def retry(self, job_id: str, *, actor: str) -> Job:
        """Reopen a failed or timed-out job as attempt + 1 (the only way out of a terminal stage)."""

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> Job:
            job = self.get_job(job_id, transaction)
            plan = plan_retry(get_pipeline(job.pipeline), job, self.clock(), actor, self.retention)
            self._commit_plan(transaction, job_id, plan)
            return job.model_copy(update=plan.patch)

        return run(self.db.transaction())

    def heartbeat(self, job_id: str, *, progress_text: str | None = None) -> Job:
        """Push the job's stale deadline (and set its progress text); a finished job is returned
        unchanged. The most frequent job write (every running job, every few seconds): optimistic,
        see ``_write_if_unchanged``."""

        def decide(job: Job) -> tuple[Job, dict[str, Any] | None]:
            patch = plan_heartbeat(
                get_pipeline(job.pipeline), job, self.clock(), progress_text, self.expectations
            )
            return (job, None) if patch is None else (job.model_copy(update=patch), patch)

        return self._write_if_unchanged(job_id, decide)

    def _write_if_unchanged(
        self, job_id: str, decide: Callable[[Job], tuple[_Result, dict[str, Any] | None]]
    ) -> _Result:
        """Read the job, ``decide`` a patch from it, and write the patch only if the job is still the
        version read (a precondition on its update time); re-read and decide again if it was not.

        The same isolation as a transaction for a write to one document, in two calls and with no
        lock: a transaction takes three (begin, read, commit), and its lock holds up every other
        writer of the job until it commits. The emulator, warmed up, spends 3.1 ms of CPU on a
        heartbeat written so, against 4.0 to 6.3 ms on one in a transaction.
        """
        ref = self.job_ref(job_id)
        for _ in range(OPTIMISTIC_WRITE_ATTEMPTS):
            snap = ref.get()
            if not snap.exists:
                raise JobNotFound(f"Job {job_id} not found")
            result, patch = decide(Job.model_validate(snap.to_dict()))
            if patch is None:
                return result
            try:
                ref.update(
                    _camel_patch(patch), option=self.db.write_option(last_update_time=snap.update_time)
                )
            except (FailedPrecondition, Conflict):
                continue  # written meanwhile: decide again on the new version
            except DocumentMissing:
                raise JobNotFound(f"Job {job_id} not found") from None
            return result
        raise Aborted(f"job {job_id} changed under each of {OPTIMISTIC_WRITE_ATTEMPTS} attempts to write it")

    def attach_suno_task(self, job_id: str, attempt: int, task_id: str) -> bool:
        """Store the task a callback names for ``attempt``, if that attempt has none yet (its
        generate's answer may have been lost); False if the job finished, moved on or has one."""

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> bool:
            job = self.get_job(job_id, transaction)
            if job.status.is_terminal or job.attempt != attempt or job.suno_task_id is not None:
                return False
            transaction.update(self.job_ref(job_id), {"sunoTaskId": task_id})
            return True

        return run(self.db.transaction())

    def update_fields(self, job_id: str, **fields: Any) -> None:
        """Set non-stage fields (otelTraceId, cost...) that no precondition guards."""
        self.job_ref(job_id).update(_camel_patch(fields))

    def claim_suno_generation(self, job_id: str, *, unanswered_since: datetime) -> tuple[Job, bool]:
        """(the job as read, whether this caller may ask Suno for the attempt's generation).

        Suno's generate is not idempotent, and one attempt can be delivered twice at once (two
        messages for one job, a redelivery while the first runs). The ask is recorded in this
        transaction, so of concurrent callers one wins: no task id yet, and no ask recorded after
        ``unanswered_since`` (an older one lost its answer and no callback named its task)."""

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> tuple[Job, bool]:
            job = self.get_job(job_id, transaction)
            asked = job.suno_requested_at
            if job.suno_task_id is not None or (asked is not None and asked > unanswered_since):
                return job, False
            now = self.clock()
            transaction.update(self.job_ref(job_id), _camel_patch({"suno_requested_at": now}))
            return job.model_copy(update={"suno_requested_at": now}), True

        result: tuple[Job, bool] = run(self.db.transaction())
        return result

    def add_cost(self, job_id: str, kind: str, amount: float) -> None:
        """Add to the job's cost atomically (server-side increments: no read, no contention)."""
        self.job_ref(job_id).update(
            {
                "cost.total": firestore.Increment(amount),
                f"cost.items.{kind}": firestore.Increment(amount),
            }
        )

    def mark_retrying(self, job_id: str, redelivery_within_seconds: float) -> None:
        """The worker's attempt failed and Pub/Sub will redeliver: the job reads as retrying, and as
        stuck only if no redelivery moves it within the backoff. A finished job is left alone."""

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> None:
            job = self.get_job(job_id, transaction)
            if job.status.is_terminal:
                return
            now = self.clock()
            stuck_at = self.expectations.retry_stuck_at(now, redelivery_within_seconds)
            transaction.update(self.job_ref(job_id), {"retryingSince": now, "stuckAt": stuck_at})

        try:
            run(self.db.transaction())
        except JobNotFound:
            return

    def request_cancel(self, job_id: str) -> None:
        self.job_ref(job_id).update({"cancelRequested": True, "updatedAt": self.clock()})

    def request_cancel_once(self, job_id: str) -> bool:
        """Ask a running job to stop, unless it already finished or was asked: True for the one
        caller (of any number at once) that asked."""
        ref = self.job_ref(job_id)

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> bool:
            job = self.get_job(job_id, transaction)
            if job.cancel_requested or job.status.is_terminal:
                return False
            transaction.update(ref, {"cancelRequested": True, "updatedAt": self.clock()})
            return True

        result: bool = run(self.db.transaction())
        return result

    def list_events(self, job_id: str) -> list[JobEvent]:
        docs = self.events_ref(job_id).order_by("seq").get()
        return [JobEvent.model_validate(d.to_dict()) for d in docs]

    def find_stale(self, now: datetime, limit: int) -> list[Job]:
        """Active jobs past their stage's limit. ``staleAt`` exists only on active jobs, so this
        single-field range query reads the stale candidates and nothing else."""
        docs = (
            self.collection("jobs")
            .where(filter=FieldFilter("staleAt", "<=", now))
            .order_by("staleAt")
            .limit(limit)
            .get()
        )
        return [Job.model_validate(d.to_dict()) for d in docs]

    def put_jobs(self, jobs: Sequence[Job], batch_size: int = 500) -> None:
        """Write already-built jobs as they are, in batched commits (seeding, imports, benchmarks):
        no events, no idempotency keys. Everything else creates jobs with ``create_job``."""
        for start in range(0, len(jobs), batch_size):
            batch = self.db.batch()
            for job in jobs[start : start + batch_size]:
                batch.set(self.job_ref(job.job_id), job.to_doc())
            batch.commit()

    def query_jobs(self) -> firestore.CollectionReference:
        """The jobs collection for the API's filtered listings (see services/api)."""
        return self.collection("jobs")

    def jobs_changed_after(
        self, after: datetime, after_id: str, *, until: datetime | None = None, limit: int
    ) -> list[ChangedJob]:
        """Jobs whose ``updatedAt`` is past (``after``, ``after_id``), oldest first: the change feed's
        one query (services/api/change_feed.py). Every stage change, heartbeat, cancel request and
        retry moves ``updatedAt``; ordering by it then by id makes (updatedAt, jobId) a cursor that
        any instance can resume from. Needs only the automatic single-field index on updatedAt."""
        query = self.collection("jobs").where(filter=FieldFilter("updatedAt", ">=", after))
        if until is not None:
            query = query.where(filter=FieldFilter("updatedAt", "<=", until))
        query = (
            query.order_by("updatedAt")
            .order_by("__name__")
            .start_after({"updatedAt": after, "__name__": self.job_ref(after_id or " ")})
            .limit(limit)
        )
        return [ChangedJob(Job.model_validate(d.to_dict()), d.update_time) for d in query.get()]

    def iter_jobs(self, page_size: int = 500) -> Iterator[Job]:
        query = self.collection("jobs").order_by("__name__").limit(page_size)
        last = None
        while True:
            page = (query.start_after(last) if last is not None else query).get()
            yield from (Job.model_validate(d.to_dict()) for d in page)
            if len(page) < page_size:
                return
            last = page[-1]

    # ---- executions -------------------------------------------------------------------------
    @staticmethod
    def execution_id(message_id: str, attempt: int) -> str:
        return f"{message_id}-{attempt}"

    def start_execution(self, execution: Execution) -> bool:
        """Record an attempt; False if this (message, attempt) was already recorded (a redelivery)."""
        try:
            self.execution_ref(execution.execution_id).create(execution.to_doc())
        except (AlreadyExists, Conflict):
            return False
        return True

    def start_next_execution(self, execution: Execution, max_attempts: int = 100) -> Execution:
        """Record a delivery whose attempt number Pub/Sub did not send (the emulator never does;
        Google Cloud omits it without a dead-letter policy): it is the first attempt not yet on
        record for this message, claimed with the same must-not-exist create."""
        for attempt in range(1, max_attempts + 1):
            candidate = execution.model_copy(
                update={"attempt": attempt, "execution_id": self.execution_id(execution.message_id, attempt)}
            )
            if self.start_execution(candidate):
                return candidate
        raise Conflict(f"message {execution.message_id} has {max_attempts} recorded attempts")

    def finish_execution(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        last_error: str | None = None,
        retryable: bool | None = None,
        queued_to_dlq: bool = False,
        artifact_paths: dict[str, str] | None = None,
    ) -> None:
        now = self.clock()
        snap = self.execution_ref(execution_id).get()
        started = snap.get("started_at") if snap.exists else now
        self.execution_ref(execution_id).set(
            {
                "status": status.value,
                "finished_at": now,
                "action_duration_ms": int((now - started).total_seconds() * 1000),
                "last_error": last_error,
                "retryable": retryable,
                "queued_to_dlq": queued_to_dlq,
                "artifact_paths": artifact_paths or {},
                "expire_at": now + self.retention,
            },
            merge=True,
        )

    def mark_dead_lettered(self, execution_id: str) -> None:
        self.execution_ref(execution_id).update(
            {"queued_to_dlq": True, "status": ExecutionStatus.FAIL.value, "retryable": True}
        )

    def get_execution(self, execution_id: str) -> Execution:
        snap = self.execution_ref(execution_id).get()
        if not snap.exists:
            raise NotFound(f"execution {execution_id} not found")
        return Execution.model_validate(snap.to_dict())

    def executions(self) -> firestore.CollectionReference:
        return self.collection("executions")

    def list_executions(self, job_id: str) -> list[Execution]:
        docs = self.collection("executions").where(filter=FieldFilter("job_id", "==", job_id)).get()
        return sorted((Execution.model_validate(d.to_dict()) for d in docs), key=lambda e: e.started_at)

    # ---- queues and audit -------------------------------------------------------------------
    def get_queue(self, name: str) -> QueueState:
        snap = self.queue_ref(name).get()
        return QueueState.model_validate(snap.to_dict()) if snap.exists else QueueState(name=name)

    def set_queue_paused(
        self, name: str, paused: bool, *, actor: str, push_config: dict[str, Any] | None = None
    ) -> QueueState:
        state = QueueState(
            name=name, paused=paused, changed_by=actor, changed_at=self.clock(), push_config=push_config
        )
        self.queue_ref(name).set(state.to_doc())
        return state

    def record_audit(
        self, *, actor: str, action: str, target: str, params: dict[str, Any], result: str
    ) -> AuditRecord:
        now = self.clock()
        record = AuditRecord(
            audit_id=f"{int(now.timestamp() * 1000)}_{secrets.token_hex(4)}",
            actor=actor,
            action=action,
            target=target,
            params=params,
            result=result,
            at=now,
        )
        self.audit_ref(record.audit_id).set(record.to_doc())
        return record

    def audit(self) -> firestore.CollectionReference:
        return self.collection("audit")

    # ---- alert notifications ----------------------------------------------------------------
    def claim_alert(self, key: str) -> bool:
        """True for the first claim of ``key`` (one notification to one channel), False after.

        A must-not-exist create, so of N concurrent deliveries of the same notification exactly
        one sends it. The claim expires (TTL on ``expireAt``) with the rest of the history.
        """
        now = self.clock()
        try:
            self.alert_ref(key).create({"key": key, "claimedAt": now, "expireAt": now + self.retention})
        except (AlreadyExists, Conflict):
            return False
        return True

    def release_alert(self, key: str) -> None:
        """Give a claim back after a failed delivery, so the next notification retries it."""
        self.alert_ref(key).delete()

    # ---- stream tickets (services/api/stream_tickets.py) ---------------------------------------
    def create_stream_ticket(self, ticket: str, holder: dict[str, str], ttl: timedelta) -> datetime:
        """Store a ticket for ``holder`` (who it opens a stream for); returns when it expires."""
        return self._create_once(self.stream_ticket_ref(ticket), holder, ttl)

    def redeem_stream_ticket(self, ticket: str) -> dict[str, Any] | None:
        """The ticket's holder, once: reading deletes it in the same transaction, so a second
        redemption (a copy of the URL from a log) finds nothing. None if unknown or expired
        (Firestore's TTL deletes expired tickets only eventually)."""
        return self._redeem_once(self.stream_ticket_ref(ticket))

    # ---- login codes (services/auth/login_codes.py) ------------------------------------------
    def create_login_code(self, code: str, holder: dict[str, str], ttl: timedelta) -> datetime:
        return self._create_once(self.login_code_ref(code), holder, ttl)

    def redeem_login_code(self, code: str) -> dict[str, Any] | None:
        """The code's holder, once (as ``redeem_stream_ticket``)."""
        return self._redeem_once(self.login_code_ref(code))

    def _create_once(
        self, ref: firestore.DocumentReference, holder: dict[str, str], ttl: timedelta
    ) -> datetime:
        now = self.clock()
        expires = now + ttl
        ref.create({**holder, "createdAt": now, "expireAt": expires})
        return expires

    def _redeem_once(self, ref: firestore.DocumentReference) -> dict[str, Any] | None:

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> dict[str, Any] | None:
            snap = ref.get(transaction=transaction)
            if not snap.exists:
                return None
            transaction.delete(ref)
            data: dict[str, Any] = snap.to_dict() or {}
            return data if data.get("expireAt") and data["expireAt"] > self.clock() else None

        result: dict[str, Any] | None = run(self.db.transaction())
        return result

    # ---- API queries (QuerySpec) and aggregations ----------------------------------------------
    QUERYABLE = ("jobs", "executions", "audit")

    def build_query(self, collection: str, spec: QuerySpec) -> Any:
        """The Firestore query ``spec`` describes on ``collection`` (one of QUERYABLE)."""
        if collection not in self.QUERYABLE:
            raise ValueError(f"{collection} is not queryable")
        query: Any = self.collection(collection)
        for field_name, value in spec.equals:
            query = query.where(filter=FieldFilter(field_name, "==", value))
        if spec.one_of is not None:
            query = query.where(filter=FieldFilter(spec.one_of[0], "in", list(spec.one_of[1])))
        if spec.range_field is not None and spec.range_from is not None:
            query = query.where(filter=FieldFilter(spec.range_field, ">=", spec.range_from))
        if spec.range_field is not None and spec.range_to is not None:
            query = query.where(filter=FieldFilter(spec.range_field, "<", spec.range_to))
        order = list(spec.order)
        if order and order[-1][0] != "__name__":
            order.append(("__name__", order[-1][1]))
        for field_name, descending in order:
            query = query.order_by(field_name, direction="DESCENDING" if descending else "ASCENDING")
        if spec.after is not None:
            query = query.start_after(dict(zip([f for f, _ in order], spec.after, strict=True)))
        if spec.limit is not None:
            query = query.limit(spec.limit)
        return query

    def find_jobs(self, spec: QuerySpec) -> list[Job]:
        return [Job.model_validate(d.to_dict()) for d in self.build_query("jobs", spec).get()]

    def find_executions(self, spec: QuerySpec) -> list[Execution]:
        return [Execution.model_validate(d.to_dict()) for d in self.build_query("executions", spec).get()]

    def find_audit(self, spec: QuerySpec) -> list[AuditRecord]:
        return [AuditRecord.model_validate(d.to_dict()) for d in self.build_query("audit", spec).get()]

    def build_aggregation(
        self,
        collection: str,
        spec: QuerySpec,
        *,
        count: bool = False,
        sum_of: str | None = None,
        avg_of: str | None = None,
    ) -> Any:
        # count() is always asked for: it is what turns a query or a bare collection into an
        # aggregation, and it costs nothing extra.
        aggregation = self.build_query(collection, spec).count(alias="count")
        if sum_of:
            aggregation.sum(sum_of, alias="sum")
        if avg_of:
            aggregation.avg(avg_of, alias="avg")
        return aggregation

    def aggregate(
        self,
        collection: str,
        spec: QuerySpec,
        *,
        count: bool = False,
        sum_of: str | None = None,
        avg_of: str | None = None,
    ) -> dict[str, Any]:
        """count / sum / avg over the index entries ``spec`` matches: no document is read."""
        rows = self.build_aggregation(collection, spec, count=count, sum_of=sum_of, avg_of=avg_of).get()
        return {result.alias: result.value for row in rows for result in row}

    def retry_unless_moved(
        self, job_id: str, *, actor: str, expected_attempt: int, expected_error_code: str | None = None
    ) -> Job:
        """``retry``, but only while the job is still at ``expected_attempt`` (and, if given, failed
        with ``expected_error_code``): one commit preconditioned on the update time read, whose new
        event must not exist yet. Of any number of concurrent replays of the same dead letter
        exactly one commits; the others get TransitionConflict. No transaction, so no lock waits."""
        snap = self.job_ref(job_id).get()
        if not snap.exists:
            raise JobNotFound(f"Job {job_id} not found")
        job = Job.model_validate(snap.to_dict())
        error_code = job.error.code if job.error else None
        if job.attempt != expected_attempt or (expected_error_code and error_code != expected_error_code):
            raise TransitionConflict(
                f"job {job_id} moved on (attempt {job.attempt}, error {error_code})",
                jobId=job_id,
                stage=job.stage,
            )
        plan = plan_retry(get_pipeline(job.pipeline), job, self.clock(), actor, self.retention)
        batch = self.db.batch()
        batch.update(
            self.job_ref(job_id),
            _camel_patch(plan.patch),
            option=self.db.write_option(last_update_time=snap.update_time),
        )
        batch.create(self.events_ref(job_id).document(plan.event.event_id), plan.event.to_doc())
        try:
            batch.commit()
        except (FailedPrecondition, AlreadyExists, Conflict, DocumentMissing):
            raise TransitionConflict(
                f"job {job_id} was changed by someone else meanwhile", jobId=job_id
            ) from None
        return job.model_copy(update=plan.patch)

    def replace_input_unless_moved(
        self, job_id: str, new_input: dict[str, Any], *, expected_attempt: int, expected_error_code: str
    ) -> Job:
        """Set the job's input while it is still at ``expected_attempt`` and failed with
        ``expected_error_code``; returns the job as it was. One write preconditioned on the update
        time read (as ``retry_unless_moved``): a replay or an edit that got there first wins, and
        this one raises TransitionConflict."""
        snap = self.job_ref(job_id).get()
        if not snap.exists:
            raise JobNotFound(f"Job {job_id} not found")
        job = Job.model_validate(snap.to_dict())
        error_code = job.error.code if job.error else None
        if job.attempt != expected_attempt or error_code != expected_error_code:
            raise TransitionConflict(
                f"job {job_id} moved on (attempt {job.attempt}, error {error_code})", jobId=job_id
            )
        try:
            self.job_ref(job_id).update(
                {"input": new_input, "updatedAt": self.clock()},
                option=self.db.write_option(last_update_time=snap.update_time),
            )
        except (FailedPrecondition, Conflict, DocumentMissing):
            raise TransitionConflict(
                f"job {job_id} was changed by someone else meanwhile", jobId=job_id
            ) from None
        return job

    # ---- counts (aggregation queries: the server counts index entries, no document reads) ----
    def count_jobs(self, **equals: Any) -> int:
        query: Any = self.collection("jobs")
        for field_name, value in equals.items():
            query = query.where(filter=FieldFilter(field_name, "==", value))
        result = query.count().get()
        return int(result[0][0].value)


def active_statuses() -> list[str]:
    return [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
