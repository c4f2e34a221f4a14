"""Every benchmark, one report: ``make bench``.

    python -m bench.run                      # all of them
    python -m bench.run --only pipeline,monitoring

Each benchmark is a module that prints one JSON object; each runs in its own process (its own
emulators), one after the other, so they do not share the machine's two cores. A module that does
not exist yet is reported as missing, not silently dropped. Writes bench/results/report.json (every
output in full, plus the summary rows) and bench/results/report.md (the table), and prints the table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bench.report import render_markdown, summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# name -> (module, arguments); the order they run in.
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "pipeline": ("bench.pipeline", []),
    "firestore_ops": ("bench.firestore_ops", ["--jobs", "5000", "--stale", "20"]),
    "monitoring": ("bench.monitoring", ["--jobs", "10,1000"]),
    "sse": ("bench.sse", ["--clients", "1000"]),
    "run_once": ("bench.run_once", ["--requests", "200", "--suno-latency-ms", "5000"]),
    "feed": ("bench.feed", []),
    "ingest": ("bench.ingest", ["--jobs", "200", "--clients", "16"]),
}
TIMEOUT_SECONDS = 1800


def parse_output(stdout: str) -> Any:
    """The JSON object a benchmark printed (after anything else it printed first)."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        start = text.rfind("\n{")
        if start < 0:
            raise
        return json.loads(text[start + 1 :])


def run_one(name: str, module: str, args: list[str], logs: Path) -> dict[str, Any]:
    if importlib.util.find_spec(module) is None:
        return {"missing": f"{module.replace('.', '/')}.py does not exist (yet)"}
    log = logs / f"{name}.log"
    started = time.monotonic()
    with open(log, "wb") as stderr:
        try:
            done = subprocess.run(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {TIMEOUT_SECONDS}s; see {log}", "command": [module, *args]}
    entry: dict[str, Any] = {
        "command": [module, *args],
        "seconds": round(time.monotonic() - started, 1),
        "exit_code": done.returncode,
        "log": str(log.relative_to(ROOT) if log.is_relative_to(ROOT) else log),
    }
    if done.returncode != 0:
        return {**entry, "error": f"exit code {done.returncode}; see {entry['log']}"}
    try:
        entry["result"] = parse_output(done.stdout.decode())
    except ValueError:
        entry["error"] = "printed no JSON object"
    return entry


@click.command()
@click.option("--only", default="", help="Comma-separated benchmark names (default: all).")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(only: str, results: Path) -> None:
    """Run the benchmarks; write report.json and report.md; exit 1 if one that exists failed."""
    chosen = [n.strip() for n in only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        raise click.BadParameter(f"unknown benchmark(s): {', '.join(sorted(unknown))}", param_hint="--only")
    logs = results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "benchmarks": {},
    }
    for name in chosen:
        module, args = BENCHMARKS[name]
        click.echo(f"bench: {name} ...", err=True)
        report["benchmarks"][name] = run_one(name, module, args, logs)
    report["summary"] = summarize(report)
    (results / "report.json").write_text(json.dumps(report, indent=2, default=str))
    markdown = render_markdown(report)
    (results / "report.md").write_text(markdown)
    click.echo(markdown)
    failed = [n for n, e in report["benchmarks"].items() if "error" in e]
    if failed:
        click.echo(f"failed: {', '.join(failed)} (see {logs})", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
