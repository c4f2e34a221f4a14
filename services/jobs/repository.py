"""The one module that knows Firestore paths. Nothing else calls ``.collection()``.

Layout (every collection name carries ``settings.collection_prefix``):
    jobs/{jobId}                      the job (models.Job, camelCase)
    jobs/{jobId}/events/{seq:05d}     its append-only timeline (models.JobEvent)
    idempotency/{sha256(key)}         key -> jobId, created in the same commit as the job
    executions/{messageId}-{attempt}  one record per delivery attempt (models.Execution)
    queues/{name}                     paused flag (models.QueueState)
    audit/{auditId}                   who did what (models.AuditRecord)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, Conflict
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from services.errors import JobNotFound, NotFound
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

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id(now: datetime) -> str:
    """``job_<epoch ms>_<random>``, the format the front end already shows (seed 002)."""
    return f"job_{int(now.timestamp() * 1000)}_{secrets.token_hex(4)}"


def _camel_patch(patch: dict[str, Any]) -> dict[str, Any]:
    """Model field names -> stored (camelCase) names, nested models dumped."""
    fields = Job.model_fields
    out: dict[str, Any] = {}
    for name, value in patch.items():
        alias = fields[name].alias or name if name in fields else name
        out[alias] = value.to_doc() if isinstance(value, CamelModel) else value
    return out


@dataclass(frozen=True)
class TransitionResult:
    job: Job
    applied: bool  # False: a duplicate, nothing was written
    event: JobEvent | None = None


class JobRepository:
    def __init__(self, db: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.retention = timedelta(days=settings.retention_days)

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

    # ---- jobs -------------------------------------------------------------------------------
    def create_job(self, new: JobCreate, *, actor: str = "system") -> tuple[Job, bool]:
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
            batch.create(self.idempotency_ref(new.idempotency_key), {"jobId": job.job_id, "createdAt": now})
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
        snap = self.idempotency_ref(key).get()
        return self.get_job(snap.get("jobId")) if snap.exists else None

    def get_job(self, job_id: str, transaction: firestore.Transaction | None = None) -> Job:
        snap = self.job_ref(job_id).get(transaction=transaction)
        if not snap.exists:
            raise JobNotFound(f"Job {job_id} not found")
        return Job.model_validate(snap.to_dict())

    def find_job_by_suno_task(self, suno_task_id: str) -> Job | None:
        docs = (
            self.collection("jobs").where(filter=FieldFilter("sunoTaskId", "==", suno_task_id)).limit(1).get()
        )
        return Job.model_validate(docs[0].to_dict()) if docs else None

    def _commit_plan(self, transaction: firestore.Transaction, job_id: str, plan: Plan) -> None:
        transaction.update(self.job_ref(job_id), _camel_patch(plan.patch))
        transaction.create(self.events_ref(job_id).document(plan.event.event_id), plan.event.to_doc())

    def transition(self, job_id: str, t: Transition) -> TransitionResult:
        """Move a job, writing it and its event in one transaction (see state_machine)."""

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> TransitionResult:
            job = self.get_job(job_id, transaction)
            plan = plan_transition(get_pipeline(job.pipeline), job, t, self.clock(), self.retention)
            if plan is None:
                return TransitionResult(job=job, applied=False)
            self._commit_plan(transaction, job_id, plan)
            return TransitionResult(job=job.model_copy(update=plan.patch), applied=True, event=plan.event)

        return run(self.db.transaction())

    def retry(self, job_id: str, *, actor: str) -> Job:
        """Reopen a failed or timed-out job as attempt + 1 (the only way out of a terminal stage)."""

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> Job:
            job = self.get_job(job_id, transaction)
            plan = plan_retry(get_pipeline(job.pipeline), job, self.clock(), actor, self.retention)
            self._commit_plan(transaction, job_id, plan)
            return job.model_copy(update=plan.patch)

        return run(self.db.transaction())

    def heartbeat(self, job_id: str) -> Job:
        @firestore.transactional
        def run(transaction: firestore.Transaction) -> Job:
            job = self.get_job(job_id, transaction)
            patch = plan_heartbeat(get_pipeline(job.pipeline), job, self.clock())
            if patch is None:
                return job
            transaction.update(self.job_ref(job_id), _camel_patch(patch))
            return job.model_copy(update=patch)

        return run(self.db.transaction())

    def update_fields(self, job_id: str, **fields: Any) -> None:
        """Set non-stage fields (otelTraceId, cost...) that no precondition guards."""
        self.job_ref(job_id).update(_camel_patch(fields))

    def add_cost(self, job_id: str, kind: str, amount: float) -> None:
        """Add to the job's cost atomically (server-side increments: no read, no contention)."""
        self.job_ref(job_id).update(
            {
                "cost.total": firestore.Increment(amount),
                f"cost.items.{kind}": firestore.Increment(amount),
            }
        )

    def request_cancel(self, job_id: str) -> None:
        self.job_ref(job_id).update({"cancelRequested": True, "updatedAt": self.clock()})

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

    def query_jobs(self) -> firestore.CollectionReference:
        """The jobs collection for the API's filtered listings (see services/api)."""
        return self.collection("jobs")

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

    def finish_execution(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        last_error: str | None = None,
        retryable: bool | None = None,
        queued_to_dlq: bool = False,
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
                "expire_at": now + self.retention,
            },
            merge=True,
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

    def set_queue_paused(self, name: str, paused: bool, *, actor: str) -> QueueState:
        state = QueueState(name=name, paused=paused, changed_by=actor, changed_at=self.clock())
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

    # ---- counts (aggregation queries: the server counts index entries, no document reads) ----
    def count_jobs(self, **equals: Any) -> int:
        query: Any = self.collection("jobs")
        for field_name, value in equals.items():
            query = query.where(filter=FieldFilter(field_name, "==", value))
        result = query.count().get()
        return int(result[0][0].value)


def active_statuses() -> list[str]:
    return [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
