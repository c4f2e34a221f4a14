"""The benchmark report: key figures out of each benchmark's JSON, and a short markdown table.

``bench/run.py`` writes ``report.json`` (every benchmark's full output plus ``summary``) and
``report.md`` (the table below). A benchmark that did not run shows as "not run" with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NOT_RUN = "not run"


def dig(data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``, or None where the path does not exist."""
    for key in path:
        in_mapping = isinstance(data, Mapping) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_mapping or in_list):
            return None
        data = data[key]
    return data


def _result(report: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    entry = dig(report, "benchmarks", name)
    return dig(entry, "result") if isinstance(entry, Mapping) else None


def _why_not(report: Mapping[str, Any], name: str) -> str:
    entry = dig(report, "benchmarks", name) or {}
    return str(entry.get("missing") or entry.get("error") or NOT_RUN)


def summarize(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of (area, figure, value, note); value None when the benchmark did not run."""
    rows: list[dict[str, Any]] = []

    def row(area: str, figure: str, value: Any, note: str = "") -> None:
        rows.append({"area": area, "figure": figure, "value": value, "note": note})

    pipeline = _result(report, "pipeline")
    intake, worker = dig(pipeline, "intake"), dig(pipeline, "worker")
    clients = dig(intake, "clients")
    row("Intake", "latency p50 / p99 (ms)", _pair(dig(intake, "latency_ms_p50"), dig(intake, "latency_ms_p99")),
        f"{dig(intake, 'requests')} signed webhooks, {clients} clients, Firestore + Pub/Sub emulators")  # fmt: skip
    row("Intake", "throughput (requests/s)", dig(intake, "requests_per_second"), "one in-process server")
    row("Worker", "jobs/s with tracking", dig(worker, "tracked_jobs_per_second"),
        "no-op handlers: job, events, executions in Firestore")  # fmt: skip
    row(
        "Worker",
        "jobs/s without tracking",
        dig(worker, "untracked_jobs_per_second"),
        "decode + handlers only",
    )
    row("Worker", "tracking overhead (ms/job)", dig(worker, "tracking_overhead_ms_per_job"), "")

    ops = _result(report, "firestore_ops")
    for key, label in (("video_job", "video job"), ("music_job", "Music Clips job")):
        job = dig(ops, key)
        row("Firestore", f"{label}: reads / writes / deletes",
            _triple(dig(job, "reads"), dig(job, "writes"), _sum(dig(job, "deletes"), dig(job, "ttl_deletes_later"))),
            "counted on the wire (gRPC interceptor); deletes are TTL expiries")  # fmt: skip
        row("Firestore", f"{label}: USD per million jobs", dig(job, "usd_per_million_jobs", "total"),
            _prices(ops))  # fmt: skip
    sweep = dig(ops, "sweep")
    row("Sweeper", "reads / writes per sweep",
        _pair(dig(sweep, "reads"), dig(sweep, "writes"), sep=" / "),
        f"{dig(sweep, 'jobs')} active jobs, {dig(sweep, 'stale')} stale")  # fmt: skip
    row("Sweeper", "reads per idle scheduler tick", dig(ops, "idle_scheduler_tick", "reads"),
        "sweeper + poller finding nothing")  # fmt: skip

    sse = _result(report, "sse")
    held = dig(sse, "sse", "clients_held")
    row("SSE", "commit-to-client p50 / p99 (ms)",
        _pair(dig(sse, "sse", "commit_to_receipt", "p50_ms"), dig(sse, "sse", "commit_to_receipt", "p99_ms")),
        f"{held} clients held" if held is not None else _why_not(report, "sse"))  # fmt: skip
    row("SSE", f"API memory holding {held if held is not None else 1000} clients (MB RSS)",
        dig(sse, "sse", "server", "holding_clients", "rss_mb"),
        "" if sse else _why_not(report, "sse"))  # fmt: skip
    for run in dig(sse, "polling") or []:
        row("SSE", f"polling instead, {run.get('clients')} clients: commit-to-sighting p50 / p99 (ms)",
            _pair(dig(run, "commit_to_first_poll_that_sees_it", "p50_ms"),
                  dig(run, "commit_to_first_poll_that_sees_it", "p99_ms")),
            f"every {run.get('poll_every_seconds')} s")  # fmt: skip

    run_once = _result(report, "run_once")
    for case, label in (
        ("quick", "Suno quick"),
        ("slow", "Suno credit endpoint slow"),
        ("down", "Suno down"),
    ):
        row("runOnce", f"latency p50 / p99 (ms), {label}",
            _pair(dig(run_once, case, "latency_ms_p50"), dig(run_once, case, "latency_ms_p99")),
            f"Suno at {dig(run_once, 'suno_latency_ms')} ms" if case == "slow" and run_once
            else ("" if run_once else _why_not(report, "run_once")))  # fmt: skip

    feed = _result(report, "feed")
    for run in dig(feed, "feed", "load") or [None]:
        rate = dig(run, "rate_asked")
        row("Live feed", f"W={rate} updates/s: API CPU (cores) / commit-to-client p50 / p95 / p99 (ms) / lost",
            None if run is None else (f"{run['api_cpu_cores']} / {dig(run, 'commit_to_client', 'p50_ms')} / "
                                      f"{dig(run, 'commit_to_client', 'p95_ms')} / "
                                      f"{dig(run, 'commit_to_client', 'p99_ms')} / {run['events_lost']}"),
            f"{dig(feed, 'feed', 'clients_held')} SSE clients, {dig(run, 'rate_achieved')} updates/s achieved"
            if run else _why_not(report, "feed"))  # fmt: skip
    row("Live feed", "quiet system: commit-to-client p95 (ms)", dig(feed, "feed", "quiet", "commit_to_client", "p95_ms"),
        f"{dig(feed, 'feed', 'clients_held')} SSE clients")  # fmt: skip
    row("Live feed", "drain with API up and one SSE client / with API stopped (jobs/s)",
        _pair(dig(feed, "drain", "api_up_dashboard_open", "jobs_per_second"), dig(feed, "drain", "api_stopped", "jobs_per_second")),
        f"ratio {dig(feed, 'drain', 'ratio')}, {dig(feed, 'drain', 'api_stopped', 'jobs')}-job bursts, local stack")  # fmt: skip
    row("Live feed", "intake p99 / bare commit+publish handler p99 (ms)",
        _pair(dig(feed, "intake", "p99_ms", "intake"), dig(feed, "intake", "p99_ms", "bare")),
        f"ratio {dig(feed, 'intake', 'intake_over_bare_p99')}, {dig(feed, 'intake', 'concurrency')} concurrent clients")  # fmt: skip

    monitoring = _result(report, "monitoring")
    for run in dig(monitoring, "per_instance") or [None]:
        jobs = dig(run, "jobs_in_interval")
        row("Cloud Monitoring", f"CreateTimeSeries calls per minute, {jobs if jobs is not None else '?'} jobs/min",
            dig(run, "create_time_series_calls_per_minute"),
            f"{dig(run, 'series_per_export')} series per export, per instance" if run else _why_not(report, "monitoring"))  # fmt: skip

    ingest = _result(report, "ingest")
    row("Ingest", "reports/s on one ingest process", dig(ingest, "ingest", "reports_per_second"),
        f"{dig(ingest, 'ingest', 'clients')} reporting clients, stages + heartbeats, functions-framework"
        if ingest else _why_not(report, "ingest"))  # fmt: skip
    row("Ingest", "report latency p50 / p99 (ms)",
        _pair(dig(ingest, "ingest", "latency_ms_p50"), dig(ingest, "ingest", "latency_ms_p99")), "")  # fmt: skip
    row("Ingest", "stage changes/s: reported / worker (same run)",
        _pair(dig(ingest, "ingest", "stage_changes_per_second"), dig(ingest, "worker", "stage_changes_per_second")),
        f"ratio {dig(ingest, 'ingest_to_worker_stage_changes_ratio')}")  # fmt: skip
    return rows


def _pair(a: Any, b: Any, sep: str = " / ") -> str | None:
    return None if a is None and b is None else f"{a}{sep}{b}"


def _triple(a: Any, b: Any, c: Any) -> str | None:
    return None if a is None else f"{a} / {b} / {c}"


def _sum(a: Any, b: Any) -> Any:
    return a + b if isinstance(a, int) and isinstance(b, int) else a


def _prices(ops: Mapping[str, Any] | None) -> str:
    prices = dig(ops, "prices_usd_per_100k") or {}
    if not prices:
        return ""
    return "at " + ", ".join(f"${v} per 100k {k}" for k, v in prices.items()) + " (list prices, assumed)"


def render_markdown(report: Mapping[str, Any]) -> str:
    machine = report.get("machine", {})
    lines = [
        "# Benchmarks",
        "",
        f"Generated {report.get('generated_at')} on {machine.get('cpus')} CPUs, Python {machine.get('python')}. "
        "One run on one shared machine: compare ratios, not absolute numbers.",
        "",
        "| Area | Figure | Value | Notes |",
        "|---|---|---|---|",
    ]
    for r in summarize(report):
        value = NOT_RUN if r["value"] is None else r["value"]
        lines.append(f"| {r['area']} | {r['figure']} | {value} | {r['note']} |")
    missing = [
        f"- {name}: {_why_not(report, name)}"
        for name, entry in report.get("benchmarks", {}).items()
        if not dig(entry, "result")
    ]
    if missing:
        lines += ["", "Not run:", *missing]
    return "\n".join(lines) + "\n"
