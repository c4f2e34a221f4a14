"""``jobtrail``: jobs, dead letters, queues and the sweeper from a terminal.

Two ways to reach the system, one set of commands:
- locally (default): the CLI calls the same service functions the API does, against whatever
  FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST (or Google credentials) point at, as an admin;
- a deployed API: ``--api-url`` (or JOBTRAIL_API_URL) with ``--token`` / JOBTRAIL_TOKEN (a JWT) or
  JOBTRAIL_API_KEY; the API's own owner/admin rules then apply.

    jobtrail jobs list --status failed
    jobtrail jobs tail job_1703616000000_abc123
    jobtrail jobs retry --status failed --pipeline video
    jobtrail dlq replay --all --pipeline video
    jobtrail queue pause video-worker
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import click
import requests
from pydantic import BaseModel

from services.errors import JobtrailError
from services.settings import Settings, get_settings

Progress = Callable[[int, int], None]  # (processed so far, total)


class Backend(Protocol):
    def list_jobs(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def get_job(self, job_id: str) -> dict[str, Any]: ...
    def get_events(self, job_id: str) -> dict[str, Any]: ...
    def retry(self, job_id: str) -> dict[str, Any]: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def list_dead_letters(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def replay_one(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replay_bulk(
        self, flt: dict[str, Any], limit: int, page_size: int, progress: Progress
    ) -> dict[str, Any]: ...
    def bulk_preview(self, action: str, flt: dict[str, Any]) -> dict[str, Any]: ...
    def bulk_run(
        self, action: str, flt: dict[str, Any], updated_before: str, limit: int, progress: Progress
    ) -> dict[str, Any]: ...
    def queues(self) -> dict[str, Any]: ...
    def pause(self, name: str) -> dict[str, Any]: ...
    def resume(self, name: str) -> dict[str, Any]: ...
    def sweep(self) -> dict[str, Any]: ...


def _dump(model: BaseModel) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return dumped


class LocalBackend:
    """The read layer and the control plane themselves, as an admin principal named after the OS
    user: the same functions the API's routes call."""

    def __init__(self, settings: Settings) -> None:
        from services.auth.principal import Principal, PrincipalKind, Role
        from services.clients import Clients
        from services.runtime import Runtime

        self.rt = Runtime(settings, Clients(settings))
        self.principal = Principal(f"cli-{getpass.getuser()}", Role.ADMIN, PrincipalKind.MACHINE)

    def list_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        from services.reads.jobs import search_jobs
        from services.reads.queries import JobListQuery

        return _dump(search_jobs(self.rt, self.principal, JobListQuery.model_validate(params)))

    def get_job(self, job_id: str) -> dict[str, Any]:
        from services.reads.jobs import job_detail

        return _dump(job_detail(self.rt, self.principal, job_id))

    def get_events(self, job_id: str) -> dict[str, Any]:
        from services.reads.jobs import job_timeline

        return _dump(job_timeline(self.rt, self.principal, job_id))

    def retry(self, job_id: str) -> dict[str, Any]:
        from services.control import retry_job
        from services.reads.jobs import detail_of, visible_job

        visible_job(self.rt, self.principal, job_id)
        return _dump(detail_of(self.rt, retry_job(self.rt, job_id, actor=self.principal.actor)))

    def cancel(self, job_id: str) -> dict[str, Any]:
        from services.control import cancel_job
        from services.reads.jobs import detail_of, visible_job

        visible_job(self.rt, self.principal, job_id)
        return _dump(detail_of(self.rt, cancel_job(self.rt, job_id, actor=self.principal.actor)))

    def list_dead_letters(self, params: dict[str, Any]) -> dict[str, Any]:
        from services.reads.dead_letters import dead_letters
        from services.reads.queries import DeadLetterQuery

        return _dump(dead_letters(self.rt, self.principal, DeadLetterQuery.model_validate(params)))

    def replay_one(self, body: dict[str, Any]) -> dict[str, Any]:
        from services.control import replay_job

        execution_id = body.get("executionId")
        job_id = self.rt.repo.get_execution(execution_id).job_id if execution_id else body["jobId"]
        job = replay_job(self.rt, job_id, actor=self.principal.actor, execution_id=execution_id)
        return {"mode": "single", "matched": 1, "replayed": 1, "skipped": 0, "failed": 0, "jobId": job.job_id}

    def replay_bulk(
        self, flt: dict[str, Any], limit: int, page_size: int, progress: Progress
    ) -> dict[str, Any]:
        from services.control import DeadLetterFilter, replay_dead_letters

        report = replay_dead_letters(
            self.rt,
            DeadLetterFilter.model_validate(flt),
            actor=self.principal.actor,
            limit=limit,
            page_size=page_size,
            on_progress=lambda r: progress(r.processed, r.matched),
        )
        return asdict(report)

    def bulk_preview(self, action: str, flt: dict[str, Any]) -> dict[str, Any]:
        from services.bulk import BulkAction, JobFilter, count_matching

        counts = count_matching(self.rt, BulkAction(action), JobFilter.model_validate(flt))
        return {
            "matched": sum(counts.values()),
            "byStatus": {str(k): v for k, v in counts.items()},
            "asOf": self.rt.repo.clock().isoformat(),
        }

    def bulk_run(
        self, action: str, flt: dict[str, Any], updated_before: str, limit: int, progress: Progress
    ) -> dict[str, Any]:
        from datetime import datetime

        from services.bulk import BulkAction, JobFilter, run_bulk

        report = run_bulk(
            self.rt,
            BulkAction(action),
            JobFilter.model_validate(flt),
            actor=self.principal.actor,
            updated_before=datetime.fromisoformat(updated_before),
            limit=limit,
            on_progress=lambda r: progress(r.processed, r.matched),
        )
        return {k: v for k, v in asdict(report).items() if k != "pages"}

    def queues(self) -> dict[str, Any]:
        from services.reads.queues import queue_list

        return _dump(queue_list(self.rt, self.principal))

    def pause(self, name: str) -> dict[str, Any]:
        from services.control import pause_queue
        from services.reads.queues import queue_changed

        return _dump(queue_changed(self.rt, pause_queue(self.rt, name, actor=self.principal.actor)))

    def resume(self, name: str) -> dict[str, Any]:
        from services.control import resume_queue
        from services.reads.queues import queue_changed

        return _dump(queue_changed(self.rt, resume_queue(self.rt, name, actor=self.principal.actor)))

    def sweep(self) -> dict[str, Any]:
        from services import sweeper

        return asdict(sweeper.sweep_stale_jobs(self.rt))


class RemoteBackend:
    """A deployed API over HTTPS."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise click.ClickException(f"{method} {path}: HTTP {response.status_code}, not JSON") from None
        if response.status_code >= 400:
            raise click.ClickException(
                f"{body.get('error', response.status_code)}: {body.get('message', '')}"
            )
        return body

    def list_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("GET", "/api/jobs", params=params)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{job_id}")

    def get_events(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{job_id}/events")

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/jobs/{job_id}/retry")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/jobs/{job_id}")

    def list_dead_letters(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("GET", "/api/dlq", params=params)

    def replay_one(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/dlq/replay", json=body)

    def replay_bulk(
        self, flt: dict[str, Any], limit: int, page_size: int, progress: Progress
    ) -> dict[str, Any]:
        """One call per page, so each request stays short and the bar moves; a replayed job leaves
        the dead-letter set, so the next call picks up where this one stopped."""
        total = min(int(self.list_dead_letters({**flt, "limit": 1})["total"]), limit)
        totals = {"replayed": 0, "skipped": 0, "failed": 0, "remaining": 0, "pages": 0}
        progress(0, total)
        while totals["replayed"] + totals["skipped"] + totals["failed"] < limit:
            step = min(page_size, limit - totals["replayed"] - totals["skipped"] - totals["failed"])
            result = self.replay_one({"filter": flt, "limit": step, "pageSize": step})
            for key in ("replayed", "skipped", "failed", "pages"):
                totals[key] += int(result[key])
            totals["remaining"] = int(result["remaining"])
            progress(totals["replayed"] + totals["skipped"] + totals["failed"], total)
            if result["replayed"] + result["skipped"] + result["failed"] == 0 or result["remaining"] == 0:
                break
        return {"matched": total, **totals}

    def bulk_preview(self, action: str, flt: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/bulk/preview", json={"action": action, "filter": flt})

    def bulk_run(
        self, action: str, flt: dict[str, Any], updated_before: str, limit: int, progress: Progress
    ) -> dict[str, Any]:
        """One call per page, so each request stays short and the bar moves; a job acted on leaves
        the filter, so the next call picks up where this one stopped."""
        total = min(int(self.bulk_preview(action, flt)["matched"]), limit)
        totals = {"acted": 0, "skipped": 0, "failed": 0, "remaining": 0}
        progress(0, total)
        while sum(totals[k] for k in ("acted", "skipped", "failed")) < limit:
            done = sum(totals[k] for k in ("acted", "skipped", "failed"))
            body = {
                "action": action,
                "filter": flt,
                "updatedBefore": updated_before,
                "limit": min(100, limit - done),
            }
            result = self._call("POST", "/api/bulk", json=body)
            for key in ("acted", "skipped", "failed"):
                totals[key] += int(result[key])
            totals["remaining"] = int(result["remaining"])
            progress(sum(totals[k] for k in ("acted", "skipped", "failed")), total)
            if result["acted"] + result["skipped"] + result["failed"] == 0 or result["remaining"] == 0:
                break
        return {"action": action, "matched": total, **totals}

    def queues(self) -> dict[str, Any]:
        return self._call("GET", "/api/admin/queues")

    def pause(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/api/admin/queues/{name}/pause")

    def resume(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/api/admin/queues/{name}/resume")

    def sweep(self) -> dict[str, Any]:
        raise click.ClickException("sweep runs locally (no --api-url); deployed, Cloud Scheduler runs it")


# ---- output -------------------------------------------------------------------------------------------
def _emit(ctx: click.Context, data: dict[str, Any], render: Callable[[dict[str, Any]], None]) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render(data)


def _job_line(job: dict[str, Any]) -> str:
    return (
        f"{job['jobId']:<32} {job['pipeline']:<12} {job['status']:<10} {job['stage']:<28} "
        f"{job['userId']:<16} {job['createdAt']}"
    )


def _print_job(job: dict[str, Any]) -> None:
    click.echo(f"{job['jobId']}  {job['pipeline']}  attempt {job['attempt']}")
    click.echo(f"  status    {job['status']} / {job['stage']}: {job['progressText']}")
    click.echo(f"  trace     {job['traceId']}  (user {job['userId']})")
    heartbeat = job["heartbeat"]
    click.echo(
        f"  heartbeat {heartbeat['secondsSinceUpdate']}s ago{'  STALE' if heartbeat['isStale'] else ''}"
    )
    if job.get("error"):
        click.echo(f"  error     {job['error']['code']}: {job['error']['message']}")
    click.echo(f"  cost      {job['cost']['total']:.6f}")
    click.echo(f"  logs      {job['links']['logs']}")
    if job["links"].get("trace"):
        click.echo(f"  trace     {job['links']['trace']}")


def _event_line(event: dict[str, Any]) -> str:
    took = f"{event['durationMs'] / 1000:.1f}s" if event.get("durationMs") is not None else "-"
    return f"{event['at']}  {event.get('fromStage') or '-'} -> {event['toStage']} ({took})  {event['actor']}"


def _handle_errors(fn: Callable[..., None]) -> Callable[..., None]:
    import functools

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except JobtrailError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from None

    return wrapped


# ---- commands -----------------------------------------------------------------------------------------
@click.group()
@click.option("--api-url", default=None, help="A deployed API (default: JOBTRAIL_API_URL; unset: local).")
@click.option("--token", default=None, help="Bearer JWT for --api-url (default: JOBTRAIL_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def cli(ctx: click.Context, api_url: str | None, token: str | None, as_json: bool) -> None:
    """Observe and control jobtrail's pipelines."""
    ctx.ensure_object(dict)
    settings: Settings = ctx.obj.get("settings") or get_settings()  # tests hand theirs in
    url = api_url or settings.jobtrail_api_url
    ctx.obj["json"] = as_json

    def backend() -> Backend:
        if not url:
            local = LocalBackend(settings)
            ctx.call_on_close(local.rt.clients.close)
            return local
        headers: dict[str, str] = {}
        secret = token or (settings.jobtrail_token.get_secret_value() if settings.jobtrail_token else None)
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        elif settings.jobtrail_api_key:
            headers["X-API-Key"] = settings.jobtrail_api_key.get_secret_value()
        else:
            raise click.ClickException("--api-url needs --token, JOBTRAIL_TOKEN or JOBTRAIL_API_KEY")
        return RemoteBackend(url, headers)

    ctx.obj["backend"] = backend


def _backend(ctx: click.Context) -> Backend:
    backend: Backend = ctx.obj["backend"]()
    return backend


@cli.group()
def jobs() -> None:
    """List, show, follow, retry and cancel jobs."""


@jobs.command("list")
@click.option("--status", default=None)
@click.option("--stage", default=None)
@click.option("--pipeline", default=None)
@click.option("--account", "account_id", default=None)
@click.option("--scenario", "scenario_id", default=None)
@click.option("--trace", "trace_id", default=None)
@click.option("--user", "user_id", default=None)
@click.option("--sort", type=click.Choice(["-createdAt", "createdAt", "-updatedAt"]), default="-createdAt")
@click.option("--limit", type=click.IntRange(1, 200), default=50)
@click.option("--cursor", default=None)
@click.pass_context
@_handle_errors
def jobs_list(ctx: click.Context, **options: Any) -> None:
    names = {
        "account_id": "accountId",
        "scenario_id": "scenarioId",
        "trace_id": "traceId",
        "user_id": "userId",
    }
    params = {names.get(k, k): v for k, v in options.items() if v is not None}
    page = _backend(ctx).list_jobs(params)

    def render(data: dict[str, Any]) -> None:
        for job in data["jobs"]:
            click.echo(_job_line(job))
        if data.get("nextCursor"):
            click.echo(f"more: --cursor {data['nextCursor']}")

    _emit(ctx, page, render)


@jobs.command("show")
@click.argument("job_id")
@click.pass_context
@_handle_errors
def jobs_show(ctx: click.Context, job_id: str) -> None:
    backend = _backend(ctx)
    job, timeline = backend.get_job(job_id), backend.get_events(job_id)

    def render(data: dict[str, Any]) -> None:
        _print_job(data["job"])
        click.echo("  timeline")
        for event in data["timeline"]["events"]:
            click.echo(f"    {_event_line(event)}")

    _emit(ctx, {"job": job, "timeline": timeline}, render)


@jobs.command("tail")
@click.argument("job_id")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between polls.")
@click.pass_context
@_handle_errors
def jobs_tail(ctx: click.Context, job_id: str, interval: float) -> None:
    """Follow a job until it ends; exit 0 if it succeeded, 1 otherwise."""
    backend = _backend(ctx)
    seen = 0
    while True:
        job = backend.get_job(job_id)
        for event in backend.get_events(job_id)["events"]:
            if event["seq"] > seen:
                seen = event["seq"]
                click.echo(json.dumps(event) if ctx.obj["json"] else _event_line(event))
        if job["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
            if not ctx.obj["json"]:
                click.echo(f"{job_id} ended: {job['status']} ({job['stage']})")
            ctx.exit(0 if job["status"] == "succeeded" else 1)
        time.sleep(interval)


def _bulk_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--status", default=None, help="One of the statuses the action applies to."),
            click.option("--pipeline", default=None),
            click.option("--account", "account_id", default=None),
            click.option("--scenario", "scenario_id", default=None),
            click.option("--user", "user_id", default=None),
            click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True),
            click.option("--yes", is_flag=True, help="Do not ask before acting."),
        ]
    ):
        fn = option(fn)
    return fn


def _filters_given(options: dict[str, Any]) -> bool:
    return any(v is not None for k, v in options.items() if k not in ("limit", "yes"))


def _bulk(ctx: click.Context, action: str, options: dict[str, Any]) -> None:
    """Preview, confirm, act with a progress bar. Safe to rerun and to run beside another run."""
    names = {"account_id": "accountId", "scenario_id": "scenarioId", "user_id": "userId"}
    flt = {names.get(k, k): v for k, v in options.items() if k not in ("limit", "yes") and v is not None}
    backend = _backend(ctx)
    preview = backend.bulk_preview(action, flt)
    click.echo(f"{preview['matched']} job(s) match: {preview['byStatus']}", err=True)
    if preview["matched"] == 0:
        _emit(ctx, {"action": action, "matched": 0, "acted": 0, "skipped": 0, "failed": 0}, lambda r: None)
        return
    if not options["yes"] and not ctx.obj["json"]:
        click.confirm(f"{action} {min(preview['matched'], options['limit'])} job(s)?", abort=True, err=True)
    with click.progressbar(length=1, label=f"{action}ing", file=sys.stderr, show_pos=True) as bar:
        done = {"n": 0}

        def progress(processed: int, total: int) -> None:
            bar.length = max(total, processed, 1)
            bar.update(processed - done["n"])
            done["n"] = processed

        report = backend.bulk_run(action, flt, preview["asOf"], options["limit"], progress)
    _emit(
        ctx,
        report,
        lambda r: click.echo(
            f"{action}: acted on {r['acted']}, skipped {r['skipped']} (moved or done by another run), "
            f"failed {r['failed']}, remaining {r['remaining']}"
        ),
    )
    if report["failed"]:
        ctx.exit(1)


@jobs.command("retry")
@click.argument("job_id", required=False)
@_bulk_options
@click.pass_context
@_handle_errors
def jobs_retry(ctx: click.Context, job_id: str | None, **options: Any) -> None:
    """Retry one job, or every failed or timed-out job matching the filters:

    jobtrail jobs retry --status failed --pipeline video"""
    if job_id and _filters_given(options):
        raise click.UsageError("give a job id or filters, not both")
    if job_id:
        _emit(ctx, _backend(ctx).retry(job_id), _print_job)
    else:
        _bulk(ctx, "retry", options)


@jobs.command("cancel")
@click.argument("job_id", required=False)
@_bulk_options
@click.pass_context
@_handle_errors
def jobs_cancel(ctx: click.Context, job_id: str | None, **options: Any) -> None:
    """Cancel one job, or every queued or running job matching the filters."""
    if job_id and _filters_given(options):
        raise click.UsageError("give a job id or filters, not both")
    if job_id:
        _emit(ctx, _backend(ctx).cancel(job_id), _print_job)
    else:
        _bulk(ctx, "cancel", options)


@cli.group()
def dlq() -> None:
    """The dead-letter queue: list and replay."""


def _dlq_filter(pipeline: str | None, account_id: str | None, scenario_id: str | None) -> dict[str, Any]:
    given = {"pipeline": pipeline, "accountId": account_id, "scenarioId": scenario_id}
    return {k: v for k, v in given.items() if v is not None}


@dlq.command("list")
@click.option("--pipeline", default=None)
@click.option("--account", "account_id", default=None)
@click.option("--scenario", "scenario_id", default=None)
@click.option("--limit", type=click.IntRange(1, 200), default=50)
@click.option("--cursor", default=None)
@click.pass_context
@_handle_errors
def dlq_list(
    ctx: click.Context,
    pipeline: str | None,
    account_id: str | None,
    scenario_id: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    params = {**_dlq_filter(pipeline, account_id, scenario_id), "limit": limit}
    if cursor:
        params["cursor"] = cursor
    page = _backend(ctx).list_dead_letters(params)

    def render(data: dict[str, Any]) -> None:
        click.echo(f"{data['total']} dead-lettered job(s)")
        for job in data["jobs"]:
            click.echo(f"{_job_line(job)}  {job['error']['message'] if job.get('error') else ''}")
        if data.get("nextCursor"):
            click.echo(f"more: --cursor {data['nextCursor']}")

    _emit(ctx, page, render)


@dlq.command("replay")
@click.option(
    "--execution", "execution_id", default=None, help="Replay the job of this dead-lettered execution."
)
@click.option("--job", "job_id", default=None, help="Replay this dead-lettered job.")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter matching the filters.")
@click.option("--pipeline", default=None)
@click.option("--account", "account_id", default=None)
@click.option("--scenario", "scenario_id", default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 500), default=100, show_default=True)
@click.pass_context
@_handle_errors
def dlq_replay(
    ctx: click.Context,
    execution_id: str | None,
    job_id: str | None,
    replay_all: bool,
    pipeline: str | None,
    account_id: str | None,
    scenario_id: str | None,
    limit: int,
    page_size: int,
) -> None:
    """One dead letter (--execution or --job), or in bulk (--all [filters]), with a progress bar.
    Safe to rerun, and safe while another replay runs: each job is replayed once."""
    chosen = [x for x in (execution_id, job_id, replay_all or None) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --execution, --job, --all")
    backend = _backend(ctx)
    if not replay_all:
        body = {"executionId": execution_id} if execution_id else {"jobId": job_id}
        _emit(ctx, backend.replay_one(body), lambda r: click.echo(f"replayed {r['jobId']}"))
        return
    with click.progressbar(length=1, label="replaying", file=sys.stderr, show_pos=True) as bar:
        done = {"n": 0}

        def progress(processed: int, total: int) -> None:
            bar.length = max(total, processed, 1)
            bar.update(processed - done["n"])
            done["n"] = processed

        report = backend.replay_bulk(
            _dlq_filter(pipeline, account_id, scenario_id), limit, page_size, progress
        )
    _emit(
        ctx,
        report,
        lambda r: click.echo(
            f"replayed {r['replayed']}, skipped {r['skipped']} (replayed elsewhere), failed {r['failed']}, "
            f"remaining {r['remaining']}"
        ),
    )
    if report["failed"]:
        ctx.exit(1)


@cli.group()
def queue() -> None:
    """Pause and resume queues."""


@queue.command("list")
@click.pass_context
@_handle_errors
def queue_list(ctx: click.Context) -> None:
    def render(data: dict[str, Any]) -> None:
        for q in data["queues"]:
            click.echo(
                f"{q['name']:<28} {'PAUSED' if q['paused'] else 'running':<8} {q.get('changedBy') or ''}"
            )

    _emit(ctx, _backend(ctx).queues(), render)


@queue.command("pause")
@click.argument("name")
@click.pass_context
@_handle_errors
def queue_pause(ctx: click.Context, name: str) -> None:
    _emit(ctx, _backend(ctx).pause(name), lambda q: click.echo(f"{q['name']} paused"))


@queue.command("resume")
@click.argument("name")
@click.pass_context
@_handle_errors
def queue_resume(ctx: click.Context, name: str) -> None:
    _emit(ctx, _backend(ctx).resume(name), lambda q: click.echo(f"{q['name']} resumed"))


@cli.command()
@click.pass_context
@_handle_errors
def sweep(ctx: click.Context) -> None:
    """Time out stale jobs now (what Cloud Scheduler triggers every minute)."""
    _emit(ctx, _backend(ctx).sweep(), lambda r: click.echo(f"found {r['found']}, timed out {r['timed_out']}"))


@cli.command()
@click.argument("subject")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
@click.option("--ttl", type=click.IntRange(60, 7 * 86400), default=3600, show_default=True)
@click.pass_context
def token(ctx: click.Context, subject: str, role: str, ttl: int) -> None:
    """Mint an HS256 token with JWT_SECRET (local runs and development deployments)."""
    from services.auth import mint_token

    click.echo(mint_token(ctx.obj.get("settings") or get_settings(), subject, role, ttl))


def main() -> None:
    cli(obj={})
