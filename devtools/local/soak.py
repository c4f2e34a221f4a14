"""A whole-stack soak: many jobs over both pipelines through the local stack while faults are
injected, then a reconciliation of everything that was accepted against Firestore and the metrics.

    python -m devtools.local.soak --jobs 10000 --minutes 45    # the full soak
    python -m devtools.local.soak --jobs 300 --minutes 4       # what tests/emulator/test_soak_short.py runs

The stack is ``devtools.local.stack`` (emulators, the fake outside world, every entry point as its
own functions-framework process, the scheduler thread). Faults, all during the send phase:

- the fake world answers ~5% of calls to the video source, processor, Instagram and Suno with 503;
- a few poison webhooks (video URLs containing "poison"): they dead-letter after 5 attempts;
- duplicate webhooks (same deliveryId, some concurrently) and duplicate runOnce calls (same
  Idempotency-Key); every Suno callback sent twice, after intermediate ones;
- a window where Suno never calls back (the poller must finish those jobs) and one where Suno never
  finishes (the sweeper must time those jobs out at Music Clips' 10-minute limit);
- a few cancels through the API (DELETE /api/jobs/{id});
- the pipeline worker killed (SIGKILL) and restarted twice, its /metrics scraped just before;
- the Firestore emulator frozen (SIGSTOP, data kept) for 10 s once.

Every request that fails (5xx, timeout) is sent again with the same idempotency key, as a real
sender would. Once every job has finished (or the time is up) the reconciliation checks that every
accepted job (every 202) is in exactly one terminal state or dead-lettered, none is missing or
duplicated, and the worker's counters agree with the execution records. It prints the
reconciliation as JSON; the exit status is 1 on any gap. ``--minutes`` bounds sending and draining;
starting the stack and reading everything back add about a minute (see docs/decisions/0007).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.local.stack import PROJECT, ROOT, LocalStack, running_stack
from infra import emulators as emu
from services.auth.credentials import mint_token
from services.clients import Clients
from services.intake import SIGNATURE_HEADER, sign
from services.jobs.models import Execution, ExecutionStatus, Job, JobEvent
from services.jobs.repository import JobRepository, QuerySpec
from services.pipelines.music_clips import MUSIC_CLIPS
from services.pipelines.spec import ACTIVE_STATUSES, JobStatus
from services.runtime import Runtime
from services.settings import Settings
from services.sweeper import sweep_stale_jobs

VIDEO = "video"
MUSIC = MUSIC_CLIPS.name
DEAD_LETTERED = "DEAD_LETTERED"
# Counters reconciled against Firestore, as exposed at /metrics (sample names).
WORKER_COUNTERS = ("worker_success_total", "worker_failure_total", "jobs_finished_total")
# How many examples each gap lists in the JSON (the counts are always complete).
EXAMPLES = 10
# Issue 15's target: a cancel stops a running job within 5 s, even mid-step.
CANCEL_WITHIN_SECONDS = 5.0
# A video job the soak cancels mid-step downloads this slowly (the fake source honours "slow-<ms>ms"
# in the URL), so the DELETE lands while its worker waits on the download: under the client's
# external_timeout_seconds (10 s), so a download nobody cancels still finishes.
CANCEL_DOWNLOAD_MS = 6000

# Set per run with POST /_control: retries happen, nothing is slow enough to time a test out.
WORLD_FAULTS: dict[str, Any] = {
    "seed": 11,
    "video": {"failure_rate": 0.05, "latency_ms": 20},
    "processor": {"failure_rate": 0.05, "latency_ms": 50},
    "instagram": {"failure_rate": 0.05, "latency_ms": 20},
    "suno": {
        "failure_rate": 0.05,
        "latency_ms": 20,
        # A generation costs one fake credit; runOnce refuses below suno_credits_per_generation.
        "credits": 1_000_000_000,
        # Long enough for the worker to store the task id first, mostly: the rest is the poller's.
        "callback_delay_s": 1.0,
        "duplicate_callbacks": True,
        "intermediate_callbacks": True,
    },
}
# What the stack's processes run with: in-call retries short, polls frequent, logs quiet.
STACK_ENV = {
    "EXTERNAL_BACKOFF_INITIAL_SECONDS": "0.05",
    "EXTERNAL_BACKOFF_MAX_SECONDS": "0.2",
    "SUNO_POLL_INTERVAL_SECONDS": "2",
    "SUNO_POLL_MAX_INTERVAL_SECONDS": "10",
    # Redelivery here is immediate (~1 s, see drop_retry_policies), not 10-600 s: the breaker's
    # open spell shrinks with it (30 s of ~150 s of attempts in production, 1 s of ~5 s here), or
    # one poison message would dead-letter every video job that arrives while the breaker is open.
    "BREAKER_RESET_SECONDS": "1",
}


# ---- the plan -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoakPlan:
    jobs: int = 10_000
    minutes: float = 45.0
    # Share of the time budget spent sending; the rest drains (dead-lettering takes ~40 s).
    send_share: float = 0.6
    music_share: float = 0.3
    poison: int = 5
    duplicate_share: float = 0.05
    cancels: int = 5
    # Fractions of the send phase (by jobs sent) where Suno never finishes / never calls back.
    suno_never_window: tuple[float, float] = (0.02, 0.05)
    suno_no_callback_window: tuple[float, float] = (0.08, 0.12)
    worker_restarts_at: tuple[float, ...] = (0.3, 0.7)
    firestore_outage_at: float = 0.5
    firestore_outage_seconds: float = 10.0
    senders: int = 8
    request_timeout_seconds: float = 20.0
    # A request is sent again (same key) until it is accepted or this much time has passed.
    accept_within_seconds: float = 120.0
    scheduler_interval_seconds: float = 2.0
    log_level: str = "WARNING"
    seed: int = 7

    @property
    def send_seconds(self) -> float:
        return self.minutes * 60 * self.send_share

    @property
    def rate(self) -> float:
        """Jobs per second while sending."""
        return self.jobs / self.send_seconds


# ---- metrics ----------------------------------------------------------------------------------------
Labels = tuple[tuple[str, str], ...]


def scrape_counters(url: str, timeout: float = 10.0) -> dict[str, dict[Labels, float]]:
    """Every sample of a /metrics page by sample name and sorted labels."""
    text = requests.get(f"{url}/metrics", timeout=timeout).text
    samples: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = float(sample.value)
    return dict(samples)


def counter_total(samples: Mapping[str, Mapping[Labels, float]], name: str, **labels: str) -> float:
    """Sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if wanted <= set(k))


def add_samples(
    total: dict[str, dict[Labels, float]], more: Mapping[str, Mapping[Labels, float]]
) -> dict[str, dict[Labels, float]]:
    for name, series in more.items():
        for labels, value in series.items():
            total.setdefault(name, {})
            total[name][labels] = total[name].get(labels, 0.0) + value
    return total


# ---- what was sent ------------------------------------------------------------------------------------
@dataclass
class Submission:
    """One job the soak asked for, and every answer it got (duplicates included)."""

    index: int
    key: str  # the idempotency key as the service stores it
    pipeline: str
    poison: bool = False
    cancel: bool = False
    duplicate: bool = False
    job_ids: set[str] = field(default_factory=set)  # from every 202
    posts: int = 0
    refusals: Counter[str] = field(default_factory=Counter)  # non-202 answers, by status or error
    gave_up: bool = False
    cancel_status: int | None = None
    cancel_mid_step: bool = False  # cancelled while its worker runs a step (a slow download)
    cancel_sent: bool = False
    cancel_stage_asked: str | None = None  # the job's stage in the DELETE's answer
    cancel_seconds: float | None = None  # from the DELETE's answer to the job reading cancelled

    @property
    def job_id(self) -> str | None:
        return min(self.job_ids) if self.job_ids else None


@dataclass
class FaultLog:
    """What the chaos thread did, in seconds since sending began."""

    worker_restarts: list[dict[str, Any]] = field(default_factory=list)
    firestore_outages: list[dict[str, float]] = field(default_factory=list)
    suno_windows: list[dict[str, Any]] = field(default_factory=list)
    # [scrape time - slack, kill time + slack] as epoch seconds: executions the worker closed in
    # there may be missing from the scraped counters (the kill lands between scrape and record).
    restart_windows: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Traffic:
    """Sends the plan's jobs at its rate from a pool of threads; records every answer."""

    def __init__(self, stack: LocalStack, plan: SoakPlan) -> None:
        self.stack = stack
        self.plan = plan
        settings = Settings()  # the stack's processes run on these same defaults
        self._webhook_secret = settings.webhook_hmac_secret.get_secret_value()
        self._user_token = mint_token(settings, "soak-user", "user", ttl_seconds=6 * 3600)
        self._admin_token = mint_token(settings, "soak-admin", "admin", ttl_seconds=6 * 3600)
        self._rng = random.Random(plan.seed)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.submissions: list[Submission] = []
        self.sent = 0  # jobs handed to the pool (the chaos thread's clock)
        self.started = time.monotonic()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def plan_submissions(self) -> list[tuple[Submission, Callable[[], requests.Response]]]:
        plan, rng = self.plan, self._rng
        poison_at = (
            {int((k + 0.5) * plan.jobs / plan.poison) for k in range(plan.poison)} if plan.poison else set()
        )
        cancel_at = (
            {int((k + 0.25) * plan.jobs / plan.cancels) for k in range(plan.cancels)}
            if plan.cancels
            else set()
        )
        out = []
        for i in range(plan.jobs):
            music = i not in poison_at and rng.random() < plan.music_share
            duplicate = rng.random() < plan.duplicate_share
            cancel = i in cancel_at and i not in poison_at
            if music:
                sub, send = self._music(i)
            else:
                sub, send = self._video(i, poison=i in poison_at, slow_download=cancel)
            sub.duplicate, sub.cancel = duplicate, cancel
            sub.cancel_mid_step = cancel and not music
            out.append((sub, send))
        self.submissions = [s for s, _ in out]
        return out

    def _video(
        self, i: int, *, poison: bool, slow_download: bool = False
    ) -> tuple[Submission, Callable[[], requests.Response]]:
        account, scenario = f"acc-{i % 7}", ("reels", "shorts")[i % 2]
        source, delivery = f"src-{i:06d}-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        body = json.dumps(
            {
                "accountId": account,
                "scenarioId": scenario,
                "sourceId": source,
                "userId": f"user-{i % 5}",
                "deliveryId": delivery,
                "videoUrl": f"https://videos.example/{'poison' if poison else 'clip'}-{i}"
                + (f"-slow-{CANCEL_DOWNLOAD_MS}ms" if slow_download else "")
                + ".mp4",
                "caption": f"soak {i}",
            }
        ).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._webhook_secret, body)}
        url = self.stack.url("webhook_intake")

        def send() -> requests.Response:
            return self._session().post(
                url, data=body, headers=headers, timeout=self.plan.request_timeout_seconds
            )

        key = f"video:{account}-{scenario}-{source}:{delivery}"
        return Submission(index=i, key=key, pipeline=VIDEO, poison=poison), send

    def _music(self, i: int) -> tuple[Submission, Callable[[], requests.Response]]:
        user, idempotency = "soak-user", f"soak-{i}-{uuid.uuid4().hex[:8]}"
        url = f"{self.stack.url('api')}/api/music-clips/channels/channel-{i % 4}/runOnce"
        headers = {"Authorization": f"Bearer {self._user_token}", "Idempotency-Key": idempotency}

        def send() -> requests.Response:
            return self._session().post(
                url, json={"userId": user}, headers=headers, timeout=self.plan.request_timeout_seconds
            )

        return Submission(index=i, key=f"music:{user}:{idempotency}", pipeline=MUSIC), send

    def deliver(self, sub: Submission, send: Callable[[], requests.Response]) -> None:
        """POST until a 202 (same key every time), then maybe cancel it through the API."""
        deadline = time.monotonic() + self.plan.accept_within_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                response = send()
                outcome = str(response.status_code)
            except requests.RequestException as exc:
                response, outcome = None, type(exc).__name__
            with self._lock:
                sub.posts += 1
                if response is not None and response.status_code == 202:
                    sub.job_ids.add(str(response.json()["jobId"]))
                else:
                    sub.refusals[outcome] += 1
            if response is not None and response.status_code == 202:
                break
            final = response is not None and response.status_code < 500 and response.status_code != 429
            if final or time.monotonic() > deadline:
                with self._lock:
                    sub.gave_up = True
                return
            time.sleep(min(0.25 * 2**attempt, 5.0))
        if sub.cancel and sub.job_id:
            self._cancel(sub)

    def _cancel(self, sub: Submission) -> None:
        """DELETE the job (once, whichever copy of a duplicate gets here first), mid-step when the
        plan says so, then time how long the job takes to read cancelled."""
        with self._lock:
            if sub.cancel_sent:
                return
            sub.cancel_sent = True
        if sub.cancel_mid_step:
            self._wait_for_stage(sub, "downloading", within=60.0)
        with contextlib.suppress(requests.RequestException):
            response = self._session().delete(
                f"{self.stack.url('api')}/api/jobs/{sub.job_id}",
                headers={"Authorization": f"Bearer {self._admin_token}"},
                timeout=self.plan.request_timeout_seconds,
            )
            answered = time.monotonic()
            sub.cancel_status = response.status_code
            if response.status_code in (200, 202):  # 202: a worker runs a step; it stops it
                sub.cancel_stage_asked = response.json().get("stage")
                sub.cancel_seconds = self._seconds_until_cancelled(sub, answered)

    def _read_job(self, sub: Submission) -> dict[str, Any] | None:
        with contextlib.suppress(requests.RequestException, ValueError):
            response = self._session().get(
                f"{self.stack.url('api')}/api/jobs/{sub.job_id}",
                headers={"Authorization": f"Bearer {self._admin_token}"},
                timeout=self.plan.request_timeout_seconds,
            )
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
        return None

    def _wait_for_stage(self, sub: Submission, stage: str, *, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            job = self._read_job(sub)
            if job is not None and (job.get("stage") == stage or JobStatus(job["status"]).is_terminal):
                return
            time.sleep(0.1)

    def _seconds_until_cancelled(self, sub: Submission, since: float, within: float = 60.0) -> float | None:
        while time.monotonic() - since < within:
            job = self._read_job(sub)
            status = JobStatus(job["status"]) if job is not None else None
            if status is JobStatus.CANCELLED:
                return round(time.monotonic() - since, 2)
            if status is not None and status.is_terminal:
                return None  # finished otherwise: the reconciliation reports it
            time.sleep(0.1)
        return None

    def run(self, on_progress: Callable[[int], None]) -> None:
        planned = self.plan_submissions()
        rate = self.plan.rate
        self.started = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.plan.senders, thread_name_prefix="soak-send") as pool:
            for n, (sub, send) in enumerate(planned):
                delay = self.started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self.deliver, sub, send)
                if sub.duplicate:
                    # Half the duplicates race the original; the rest come a little later.
                    if n % 2:
                        pool.submit(self.deliver, sub, send)
                    else:
                        pool.submit(self._later, 1.0, sub, send)
                self.sent = n + 1
                on_progress(self.sent)

    def _later(self, seconds: float, sub: Submission, send: Callable[[], requests.Response]) -> None:
        time.sleep(seconds)
        self.deliver(sub, send)


# ---- faults -------------------------------------------------------------------------------------------
class Chaos:
    """Injects the plan's faults when the share of jobs sent crosses their thresholds."""

    def __init__(self, stack: LocalStack, plan: SoakPlan, log: FaultLog) -> None:
        self.stack = stack
        self.plan = plan
        self.log = log
        self.worker_scrapes: list[dict[str, dict[Labels, float]]] = []
        self._progress = 0.0
        self._changed = threading.Condition()
        self._done = False
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def progress(self, sent: int) -> None:
        with self._changed:
            self._progress = sent / self.plan.jobs
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self._done = True
            self._changed.notify_all()
        self._thread.join()

    def _wait_for(self, share: float) -> bool:
        """True once sending passed ``share``; False if sending ended first."""
        with self._changed:
            self._changed.wait_for(lambda: self._progress >= share or self._done)
            return self._progress >= share

    def _run(self) -> None:
        p = self.plan
        events: list[tuple[float, Callable[[], None]]] = [
            (p.suno_never_window[0], lambda: self._suno("never", {"result": "never"})),
            (p.suno_never_window[1], lambda: self._suno("never ends", {"result": "success"})),
            (p.suno_no_callback_window[0], lambda: self._suno("no callback", {"callbacks_enabled": False})),
            (
                p.suno_no_callback_window[1],
                lambda: self._suno("no callback ends", {"callbacks_enabled": True}),
            ),
            *((share, self._restart_worker) for share in p.worker_restarts_at),
            (p.firestore_outage_at, self._firestore_outage),
        ]
        for share, action in sorted(events, key=lambda e: e[0]):
            if not self._wait_for(share):
                self.log.errors.append(f"sending ended before {share:.0%}: fault not injected")
                continue
            try:
                action()
            except Exception as exc:  # a fault that could not be injected is a gap, not a crash
                self.log.errors.append(f"{action}: {type(exc).__name__}: {exc}")

    def _at(self) -> float:
        return round(time.monotonic() - self._t0, 1)

    def _suno(self, what: str, changes: dict[str, Any]) -> None:
        requests.post(
            f"{self.stack.url('fake_world')}/_control", json={"suno": changes}, timeout=10
        ).raise_for_status()
        self.log.suno_windows.append({"at_s": self._at(), "what": what})

    def _restart_worker(self) -> None:
        # The stack reopens the log of a restarted process: keep what the killed one wrote.
        log = self.stack.processes["pipeline_worker"].log
        with contextlib.suppress(OSError):
            shutil.copyfile(log, log.with_suffix(f".{len(self.log.worker_restarts) + 1}.log"))
        scraped_at = time.time()
        samples = scrape_counters(self.stack.url("pipeline_worker"))
        killed_at = time.time()
        self.stack.restart("pipeline_worker")
        self.worker_scrapes.append(samples)
        self.log.restart_windows.append((scraped_at - 1.0, killed_at + 0.5))
        self.log.worker_restarts.append(
            {
                "at_s": self._at(),
                "restart_s": round(time.time() - killed_at, 1),
                "counters_before_kill": {n: counter_total(samples, n) for n in WORKER_COUNTERS},
            }
        )

    def _firestore_outage(self) -> None:
        emulator = self.stack.emulators["firestore"]
        at, epoch = self._at(), time.time()
        emu.freeze(emulator)
        try:
            time.sleep(self.plan.firestore_outage_seconds)
        finally:
            emu.thaw(emulator)
        self.log.firestore_outages.append(
            {"at_s": at, "seconds": self.plan.firestore_outage_seconds, "epoch": epoch}
        )


# ---- reading back -------------------------------------------------------------------------------------
@dataclass
class Observed:
    """Everything the reconciliation reads, gathered after draining."""

    jobs: list[Job]
    executions: list[Execution]
    events: dict[str, list[JobEvent]]
    suno_tasks: dict[str, dict[str, Any]]  # fake Suno: task id -> {status, callbacks_sent}
    worker_metrics: dict[str, dict[Labels, float]]  # summed over the worker's lives
    intake_metrics: dict[str, dict[Labels, float]]  # video jobs start at the webhook intake
    api_metrics: dict[str, dict[Labels, float]]  # Music Clips jobs start at the API
    dlq_metrics: dict[str, dict[Labels, float]]
    fake_world: dict[str, Any] = field(default_factory=dict)
    never_jobs_timed_out_by: str = "none needed"


def read_all(repo: JobRepository) -> tuple[list[Job], list[Execution], dict[str, list[JobEvent]]]:
    """Every job, execution and event of the soak's (otherwise empty) database."""
    jobs = list(repo.iter_jobs())
    executions = [Execution.model_validate(d.to_dict()) for d in repo.executions().stream()]
    # One collection-group query, not one query per job (repo.list_events): the emulator scans the
    # whole database for each query, so 10,000 of them take the better part of an hour. The events
    # subcollection is the repository's name for a job's timeline; each event names its job.
    events: dict[str, list[JobEvent]] = {job.job_id: [] for job in jobs}
    for doc in repo.db.collection_group("events").stream():
        event = JobEvent.model_validate(doc.to_dict())
        events.setdefault(event.job_id, []).append(event)
    for timeline in events.values():
        timeline.sort(key=lambda e: e.seq)
    return jobs, executions, events


def active_jobs(repo: JobRepository) -> int:
    return sum(repo.count_jobs(status=status.value) for status in ACTIVE_STATUSES)


def never_finishing(suno_tasks: Mapping[str, Mapping[str, Any]], job: Job) -> bool:
    """A Music Clips job waiting on a Suno task that the fake will never finish."""
    task = suno_tasks.get(job.suno_task_id or "")
    return job.pipeline == MUSIC and task is not None and task["status"] == "PENDING"


# ---- reconciliation -----------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    ok: bool
    count: int = 0
    examples: list[Any] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


def _check(name: str, bad: Iterable[Any], **detail: Any) -> Check:
    items = list(bad)
    return Check(name=name, ok=not items, count=len(items), examples=items[:EXAMPLES], detail=detail)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)], 2)


def worker_counted_success(execution: Execution) -> bool:
    """Whether the worker's counters file this finished execution under success (engine._run):
    a finished or cancelled attempt, and one superseded by an already finished job."""
    if execution.status in (ExecutionStatus.SUCCESS, ExecutionStatus.CANCELLED):
        return True
    superseded = (execution.last_error or "").startswith("superseded:")
    return execution.status is ExecutionStatus.FAIL and superseded and execution.retryable is False


def in_windows(at: datetime | None, windows: Iterable[tuple[float, float]]) -> bool:
    return at is not None and any(start <= at.timestamp() <= end for start, end in windows)


def terminal_events(events: list[JobEvent], job: Job) -> list[JobEvent]:
    from services.pipelines.registry import get_pipeline

    terminal = get_pipeline(job.pipeline).terminal_stages
    return [e for e in events if e.to_stage in terminal]


def _jobs_of(submissions: Iterable[Submission], jobs: Mapping[str, Job]) -> list[Job]:
    return [jobs[s.job_id] for s in submissions if s.job_id is not None and s.job_id in jobs]


def _brief(execution: Execution) -> str:
    error = f" {execution.last_error[:80]}" if execution.last_error else ""
    return f"{execution.execution_id} {execution.status.value} at {execution.started_at:%H:%M:%S}{error}"


def _error_code(job: Job) -> str | None:
    return job.error.code if job.error else None


def cancel_report(
    accepted: Iterable[Submission], jobs: Mapping[str, Job], events: Mapping[str, list[JobEvent]]
) -> dict[str, Any]:
    """Each cancel the soak sent: its answer, the seconds from that answer to the job reading
    cancelled, and where the job stopped (the cancel event's stage, actor and message)."""
    sent = [s for s in accepted if s.cancel and s.job_id]
    seconds = [s.cancel_seconds for s in sent if s.cancel_seconds is not None]
    each: list[dict[str, Any]] = []
    for sub in sent:
        job = jobs.get(sub.job_id or "")
        stop = next((e for e in events.get(sub.job_id or "", []) if job and e.to_stage == job.stage), None)
        each.append(
            {
                "job_id": sub.job_id,
                "pipeline": sub.pipeline,
                "answer": sub.cancel_status,
                "stage_when_asked": sub.cancel_stage_asked,
                "seconds_to_cancelled": sub.cancel_seconds,
                "status": job.status.value if job else None,
                "stopped_in": stop.from_stage if stop else None,
                "stopped_by": stop.actor if stop else None,
                "how": stop.message if stop else None,
            }
        )
    return {
        "count": len(sent),
        "answers": {str(k): v for k, v in Counter(s.cancel_status for s in sent).items()},
        "mid_step": sum("during step" in (e["how"] or "") for e in each),
        "seconds_to_cancelled": {"p50": _percentile(seconds, 50), "max": max(seconds, default=None)},
        "stopped_in": dict(Counter(f"{e['stopped_in']} ({e['stopped_by']})" for e in each)),
        "each": each,
    }


def reconcile(
    submissions: list[Submission], observed: Observed, faults: FaultLog, plan: SoakPlan
) -> dict[str, Any]:
    """The soak's verdict: every check, its count and a few examples; ``ok`` only if all pass."""
    jobs = {j.job_id: j for j in observed.jobs}
    accepted = [s for s in submissions if s.job_ids]
    checks: list[Check] = []

    # -- nothing missing, nothing duplicated --------------------------------------------------------
    checks.append(
        _check("every request accepted (202) in the end", [s.key for s in submissions if not s.job_ids])
    )
    checks.append(
        _check(
            "one job id per idempotency key in the answers",
            [(s.key, sorted(s.job_ids)) for s in accepted if len(s.job_ids) > 1],
        )
    )
    checks.append(
        _check("every accepted job is in Firestore", [s.job_id for s in accepted if s.job_id not in jobs])
    )
    by_key: dict[str | None, list[str]] = defaultdict(list)
    for job in observed.jobs:
        by_key[job.idempotency_key].append(job.job_id)
    checks.append(
        _check(
            "one job per idempotency key in Firestore",
            [(k, ids) for k, ids in by_key.items() if len(ids) > 1 or k is None],
        )
    )
    known_keys = {s.key for s in submissions}
    checks.append(
        _check(
            "no job the soak did not ask for",
            [j.job_id for j in observed.jobs if j.idempotency_key not in known_keys],
        )
    )

    # -- every job finished, once, with a reason -----------------------------------------------------
    executions_by_job: dict[str, list[Execution]] = defaultdict(list)
    for execution in observed.executions:
        executions_by_job[execution.job_id].append(execution)
    checks.append(
        _check(
            "every job in a terminal state",
            [
                {
                    "jobId": j.job_id,
                    "stage": j.stage,
                    "executions": [
                        _brief(e) for e in sorted(executions_by_job[j.job_id], key=lambda e: e.started_at)
                    ],
                }
                for j in observed.jobs
                if not j.status.is_terminal
            ],
        )
    )
    checks.append(
        _check(
            "every failed or timed-out job says why",
            [
                j.job_id
                for j in observed.jobs
                if j.status in (JobStatus.FAILED, JobStatus.TIMED_OUT)
                and not (j.error and j.error.code and j.error.message)
            ],
        )
    )
    dead_lettered = [j for j in observed.jobs if j.error is not None and j.error.code == DEAD_LETTERED]
    checks.append(
        _check(
            "every dead-lettered job has an execution queued_to_dlq",
            [
                j.job_id
                for j in dead_lettered
                if not any(e.queued_to_dlq for e in executions_by_job[j.job_id])
            ],
        )
    )
    timeline_errors = []
    for job in observed.jobs:
        events = observed.events.get(job.job_id, [])
        ends = terminal_events(events, job)
        # A job still running is reported above; here, only a timeline that contradicts the job.
        expected_ends = 1 if job.status.is_terminal else 0
        if (
            len(ends) != expected_ends
            or not events
            or events[-1].to_stage != job.stage
            or job.event_count != len(events)
        ):
            timeline_errors.append(
                {
                    "jobId": job.job_id,
                    "stage": job.stage,
                    "events": [e.to_stage for e in events],
                    "eventCount": job.event_count,
                }
            )
    checks.append(_check("one terminal event per job, last event = job stage", timeline_errors))

    # -- what each injected fault must have led to -----------------------------------------------------
    poison = [s for s in accepted if s.poison]
    checks.append(
        _check(
            "poison jobs dead-lettered",
            [(j.job_id, j.stage) for j in _jobs_of(poison, jobs) if _error_code(j) != DEAD_LETTERED],
            poison=len(poison),
        )
    )
    never = [j for j in observed.jobs if never_finishing(observed.suno_tasks, j)]
    checks.append(
        _check(
            "Suno tasks that never finish: their jobs timed out",
            [
                (j.job_id, j.stage)
                for j in never
                if j.status not in (JobStatus.TIMED_OUT, JobStatus.CANCELLED)
            ],
            jobs=len(never),
            timed_out_by=observed.never_jobs_timed_out_by,
        )
    )
    by_poller = by_callback = 0
    for job in observed.jobs:
        ends = terminal_events(observed.events.get(job.job_id, []), job)
        if job.pipeline == MUSIC and job.status is JobStatus.SUCCEEDED and ends:
            by_poller += ends[0].actor == "suno-poller"
            by_callback += ends[0].actor == "suno-callback"
    no_callback_tasks = [
        t for t, v in observed.suno_tasks.items() if v["status"] == "SUCCESS" and v["callbacks_sent"] == 0
    ]
    # 200: cancelled where it stood; 202: a worker was running a step and stops it (cooperatively).
    cancelled_by_api = [s for s in accepted if s.cancel_status in (200, 202)]
    cancels = cancel_report(accepted, jobs, observed.events)
    checks.append(
        _check(
            f"cancelled through the API (200 or 202) means cancelled, within {CANCEL_WITHIN_SECONDS:g} s",
            [
                s.job_id
                for s in cancelled_by_api
                if s.job_id not in jobs
                or jobs[s.job_id].status is not JobStatus.CANCELLED
                or s.cancel_seconds is None
                or s.cancel_seconds > CANCEL_WITHIN_SECONDS
            ],
            cancels=cancels["answers"],
            mid_step=cancels["mid_step"],
        )
    )

    # -- executions ---------------------------------------------------------------------------------------
    checks.append(
        _check(
            "every execution belongs to a job",
            [e.execution_id for e in observed.executions if e.job_id not in jobs],
        )
    )
    kills = [end for _, end in faults.restart_windows]
    outages = [(o["epoch"], o["epoch"] + o["seconds"]) for o in faults.firestore_outages if "epoch" in o]

    def explained(execution: Execution) -> bool:
        """Left in progress by a killed worker, or one whose close could not reach Firestore."""
        started = execution.started_at.timestamp()
        after_kill = any(kill - 120 <= started <= kill for kill in kills)
        in_outage = any(start - 120 <= started <= end + 5 for start, end in outages)
        return after_kill or in_outage

    in_progress = [e for e in observed.executions if e.status is ExecutionStatus.IN_PROGRESS]
    checks.append(
        _check(
            "executions left in progress only by a killed worker or the Firestore outage",
            [e.execution_id for e in in_progress if not explained(e)],
            in_progress=len(in_progress),
        )
    )

    # -- counters against records ------------------------------------------------------------------------
    closed = [e for e in observed.executions if e.finished_at is not None]
    windows = faults.restart_windows
    for name, counted in (
        ("worker_success_total", lambda e: worker_counted_success(e)),
        ("worker_failure_total", lambda e: not worker_counted_success(e)),
    ):
        records = [e for e in closed if counted(e)]
        unscraped = sum(in_windows(e.finished_at, windows) for e in records)
        scraped = int(counter_total(observed.worker_metrics, name))
        checks.append(
            Check(
                name=f"{name} agrees with the execution records",
                ok=len(records) - unscraped <= scraped <= len(records),
                count=abs(len(records) - scraped),
                detail={
                    "metric": scraped,
                    "firestore": len(records),
                    "closed_between_scrape_and_kill": unscraped,
                },
            )
        )
    for pipeline, where in ((VIDEO, observed.intake_metrics), (MUSIC, observed.api_metrics)):
        in_firestore = sum(j.pipeline == pipeline for j in observed.jobs)
        started = int(counter_total(where, "jobs_started_total", pipeline=pipeline))
        checks.append(
            Check(
                name=f"jobs_started_total{{pipeline={pipeline}}} == {pipeline} jobs in Firestore",
                ok=started == in_firestore,
                count=abs(started - in_firestore),
                detail={"metric": started, "firestore": in_firestore},
            )
        )
    dlq_metric = int(counter_total(observed.dlq_metrics, "worker_dlq_total"))
    checks.append(
        Check(
            name="worker_dlq_total (DLQ analyzer) == dead-lettered jobs",
            ok=dlq_metric == len(dead_lettered),
            count=abs(dlq_metric - len(dead_lettered)),
            detail={"metric": dlq_metric, "firestore": len(dead_lettered)},
        )
    )
    finished_by_worker: Counter[tuple[str, str]] = Counter()
    finished_unscraped: Counter[tuple[str, str]] = Counter()
    for job in observed.jobs:
        ends = terminal_events(observed.events.get(job.job_id, []), job)
        if ends and ends[0].actor == "worker":
            finished_by_worker[(job.pipeline, job.status.value)] += 1
            finished_unscraped[(job.pipeline, job.status.value)] += in_windows(ends[0].at, windows)
    finished_metric = {
        (dict(k)["pipeline"], dict(k)["status"]): int(v)
        for k, v in observed.worker_metrics.get("jobs_finished_total", {}).items()
    }
    mismatched = [
        {
            "pipeline": p,
            "status": s,
            "metric": finished_metric.get((p, s), 0),
            "firestore": n,
            "unscraped": finished_unscraped[(p, s)],
        }
        for (p, s), n in sorted(
            set(finished_by_worker.items()) | {(k, 0) for k in finished_metric if k not in finished_by_worker}
        )
        if not n - finished_unscraped[(p, s)] <= finished_metric.get((p, s), 0) <= n
    ]
    checks.append(_check("jobs_finished_total (worker) == jobs the worker finished", mismatched))

    # -- the faults really happened -----------------------------------------------------------------------
    checks.append(
        _check(
            "every planned fault was injected",
            [
                *faults.errors,
                *(["worker restarts"] if len(faults.worker_restarts) != len(plan.worker_restarts_at) else []),
                *(["Firestore outage"] if len(faults.firestore_outages) != 1 else []),
                *(["no Suno task that never finishes"] if not never else []),
                *(["no Suno task without callbacks"] if not no_callback_tasks else []),
                *(["no poison job"] if plan.poison and not poison else []),
            ],
        )
    )

    status_counts: dict[str, Counter[str]] = defaultdict(Counter)
    error_codes: Counter[str] = Counter()
    latencies: dict[str, list[float]] = defaultdict(list)
    for job in observed.jobs:
        status_counts[job.pipeline][job.status.value] += 1
        if job.error:
            error_codes[job.error.code] += 1
        if job.finished_at and job.status is JobStatus.SUCCEEDED:
            latencies[job.pipeline].append((job.finished_at - job.created_at).total_seconds())
    refusals: Counter[str] = Counter()
    for s in submissions:
        refusals.update(s.refusals)
    return {
        "ok": all(c.ok for c in checks),
        "gaps": [c.name for c in checks if not c.ok],
        "checks": [asdict(c) for c in checks],
        "traffic": {
            "planned": plan.jobs,
            "accepted": len(accepted),
            "posts": sum(s.posts for s in submissions),
            "duplicate_submissions": sum(s.duplicate for s in submissions),
            "answers_other_than_202": dict(refusals),
            "by_pipeline": dict(Counter(s.pipeline for s in accepted)),
        },
        "jobs": {
            "in_firestore": len(observed.jobs),
            "by_pipeline_and_status": {p: dict(c) for p, c in status_counts.items()},
            "by_error_code": dict(error_codes),
            "dead_lettered": len(dead_lettered),
            "music_finished_by_callback": by_callback,
            "music_finished_by_poller": by_poller,
            "suno_never_finished": len(never),
            "suno_tasks_without_callback": len(no_callback_tasks),
            "suno_tasks_called_back_twice_or_more": sum(
                v["callbacks_sent"] >= 2 for v in observed.suno_tasks.values()
            ),
            # Generations Suno ran (and charged), and those beyond one per job attempt (the attempt
            # is named in each task's callback URL): paid twice.
            "suno_generations": len(observed.suno_tasks),
            "suno_extra_generations": len(observed.suno_tasks)
            - len({v.get("job_attempt") or t for t, v in observed.suno_tasks.items()}),
            "succeeded_latency_s": {
                p: {"p50": _percentile(v, 50), "p99": _percentile(v, 99)} for p, v in latencies.items()
            },
        },
        "executions": {
            "total": len(observed.executions),
            "by_status": dict(Counter(e.status.value for e in observed.executions)),
            "queued_to_dlq": sum(e.queued_to_dlq for e in observed.executions),
            "fail_reasons": dict(
                Counter(
                    (e.last_error or "?").split(":", 1)[0]
                    for e in observed.executions
                    if e.status is ExecutionStatus.FAIL
                )
            ),
            "in_progress": len(in_progress),
            "jobs_with_several_successful_executions": [
                job_id
                for job_id, runs in executions_by_job.items()
                if sum(e.status is ExecutionStatus.SUCCESS for e in runs) > 1
            ][:EXAMPLES],
        },
        "faults": {
            "worker_restarts": faults.worker_restarts,
            "firestore_outages": [
                {k: v for k, v in o.items() if k != "epoch"} for o in faults.firestore_outages
            ],
            "suno_windows": faults.suno_windows,
            "cancels": cancels,
            "fake_world_failures_injected": observed.fake_world.get("failures_injected", {}),
            "fake_world_callbacks": observed.fake_world.get("callbacks", {}),
            "fake_world_callback_failures": observed.fake_world.get("callback_failures", {}),
        },
    }


# ---- the run ----------------------------------------------------------------------------------------------
def drop_retry_policies(project: str) -> list[str]:
    """Remove the retry policy of every push subscription of the stack's topology.

    The Pub/Sub emulator (0.8.x) stops delivering nacked messages of a push subscription with a
    retry policy once more than one of them is backing off: no redelivery, no dead letter, ever
    (docs/decisions/0007 has the reproduction). Without a policy it redelivers about once a second
    and dead-letters after max_delivery_attempts, as Pub/Sub does. Returns the subscriptions changed.
    """
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]
    from google.protobuf import field_mask_pb2

    from infra.topology import load_topology

    subscriber = pubsub_v1.SubscriberClient()
    changed = []
    try:
        for name, subscription in load_topology().subscriptions.items():
            if not subscription.push_to:
                continue
            subscriber.update_subscription(
                request={
                    "subscription": {"name": subscriber.subscription_path(project, name)},
                    "update_mask": field_mask_pb2.FieldMask(paths=["retry_policy"]),
                }
            )
            changed.append(name)
    finally:
        subscriber.close()
    return changed


# ---- the run, step by step ---------------------------------------------------------------------------
def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def suno_tasks(stack: LocalStack) -> dict[str, dict[str, Any]]:
    stats = requests.get(f"{stack.url('fake_world')}/_stats", timeout=30).json()
    return dict(stats["suno_tasks"])


def drain(
    rt: Runtime, stack: LocalStack, plan: SoakPlan, deadline: float, progress: Callable[[str], None]
) -> str:
    """Wait until every job finished, or until only jobs whose Suno task never finishes are left.

    Those time out at Music Clips' 10-minute limit (the pipeline's, not a setting). When the
    scheduled sweeper cannot reach them before ``deadline``, the sweeper's own code is run here with
    its clock at their deadline, once nothing else is active. Returns who timed them out.
    """
    pending_stage = MUSIC_CLIPS.stages[3].name
    while time.monotonic() < deadline:
        active = active_jobs(rt.repo)
        if active == 0:
            return (
                "the scheduled sweeper"
                if any(t["status"] == "PENDING" for t in suno_tasks(stack).values())
                else "none needed"
            )
        if active <= 5_000:
            remaining = rt.repo.find_jobs(
                QuerySpec(one_of=("status", tuple(s.value for s in ACTIVE_STATUSES)))
            )
            tasks = suno_tasks(stack)
            waiting = [j for j in remaining if j.stage == pending_stage and never_finishing(tasks, j)]
            if remaining and len(waiting) == len(remaining):
                latest = max(j.deadline_at or j.created_at for j in waiting)
                left = deadline - time.monotonic()
                if latest.timestamp() + 3 * plan.scheduler_interval_seconds + 5 > time.time() + left:
                    report = sweep_stale_jobs(rt, now=latest + timedelta(seconds=1))
                    progress(
                        f"soak: {report.timed_out} jobs waiting on Suno forever timed out by the sweeper at their deadline"
                    )
                    return "the sweeper, run by the soak with its clock at the jobs' deadline"
        progress(f"soak: draining, {active} jobs active")
        time.sleep(5.0)
    return "not reached: time ran out"


def observe(rt: Runtime, stack: LocalStack, chaos: Chaos, timed_out_by: str) -> Observed:
    worker = add_samples({}, scrape_counters(stack.url("pipeline_worker")))
    for scrape in chaos.worker_scrapes:
        add_samples(worker, scrape)
    jobs, executions, events = read_all(rt.repo)
    world = requests.get(f"{stack.url('fake_world')}/_stats", timeout=30).json()
    return Observed(
        jobs=jobs,
        executions=executions,
        events=events,
        suno_tasks=dict(world["suno_tasks"]),
        worker_metrics=worker,
        intake_metrics=scrape_counters(stack.url("webhook_intake")),
        api_metrics=scrape_counters(stack.url("api")),
        dlq_metrics=scrape_counters(stack.url("dlq_analyzer")),
        fake_world={k: world[k] for k in ("failures_injected", "callbacks", "callback_failures")},
        never_jobs_timed_out_by=timed_out_by,
    )


@contextlib.contextmanager
def _emulator_env_restored() -> Iterator[None]:
    """The stack and the clients point this process at the soak's emulators; put things back after."""
    import os

    names = ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_soak(plan: SoakPlan, log_dir: Path, progress: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Start the stack, send the plan's jobs with its faults, drain, reconcile; the reconciliation."""
    began = time.monotonic()
    env = {**STACK_ENV, "LOG_LEVEL": plan.log_level}
    with (
        _emulator_env_restored(),
        running_stack(log_dir, extra_env=env, scheduler_interval=plan.scheduler_interval_seconds) as stack,
    ):
        requests.post(f"{stack.url('fake_world')}/_control", json=WORLD_FAULTS, timeout=10).raise_for_status()
        drop_retry_policies(PROJECT)
        settings = Settings(
            google_cloud_project=PROJECT,
            firestore_emulator_host=stack.emulators["firestore"].host,
            pubsub_emulator_host=stack.emulators["pubsub"].host,
            metrics_exporter="none",
        )
        clients = Clients(settings)
        try:
            rt = Runtime(settings, clients)
            started = time.monotonic()
            deadline = started + plan.minutes * 60
            progress(
                f"soak: stack up in {started - began:.0f}s; sending {plan.jobs} jobs at {plan.rate:.1f}/s"
            )
            faults = FaultLog()
            chaos = Chaos(stack, plan, faults)
            traffic = Traffic(stack, plan)
            ticker = _Ticker(lambda: f"soak: sent {traffic.sent}/{plan.jobs}", progress)
            chaos.start()
            with ticker:
                traffic.run(chaos.progress)
            chaos.finish()
            sent = time.monotonic()
            timed_out_by = drain(rt, stack, plan, deadline, progress)
            drained = time.monotonic()
            observed = observe(rt, stack, chaos, timed_out_by)
            result = reconcile(traffic.submissions, observed, faults, plan)
            finished = time.monotonic()
        finally:
            clients.close()
    result["plan"] = {k: v for k, v in asdict(plan).items()}
    result["timings_s"] = {
        "stack_start": round(started - began, 1),
        "send": round(sent - started, 1),
        "drain": round(drained - sent, 1),
        "read_and_reconcile": round(finished - drained, 1),
        "total": round(time.monotonic() - began, 1),
        "accepted_jobs_per_second": round(result["traffic"]["accepted"] / max(sent - started, 1e-9), 1),
        "jobs_per_second_end_to_end": round(result["traffic"]["accepted"] / max(drained - started, 1e-9), 1),
    }
    result["logs"] = str(log_dir)
    return result


class _Ticker:
    """Reports progress every ``every`` seconds while the block runs."""

    def __init__(self, line: Callable[[], str], progress: Callable[[str], None], every: float = 15.0) -> None:
        self._line, self._progress, self._every = line, progress, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-ticker", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._progress(self._line())

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@click.command()
@click.option("--jobs", type=click.IntRange(min=20), default=10_000, show_default=True)
@click.option(
    "--minutes",
    type=click.FloatRange(min=2.0),
    default=45.0,
    show_default=True,
    help="Bounds sending and draining.",
)
@click.option("--music-share", type=click.FloatRange(0.0, 1.0), default=0.3, show_default=True)
@click.option("--poison", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--cancels", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--senders", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--log-level", default="WARNING", show_default=True, help="LOG_LEVEL of the stack's processes.")
@click.option(
    "--log-dir", type=click.Path(path_type=Path), default=ROOT / ".stack" / "soak", show_default=True
)
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
def main(
    jobs: int,
    minutes: float,
    music_share: float,
    poison: int,
    cancels: int,
    senders: int,
    seed: int,
    log_level: str,
    log_dir: Path,
    output: Path | None,
) -> None:
    """Soak the local stack with faults; print the reconciliation (JSON); exit 1 on any gap."""
    plan = SoakPlan(
        jobs=jobs,
        minutes=minutes,
        music_share=music_share,
        poison=poison,
        cancels=cancels,
        senders=senders,
        seed=seed,
        log_level=log_level,
    )
    result = run_soak(plan, log_dir)
    text = json.dumps(result, indent=2, default=str)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    click.echo(text)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
