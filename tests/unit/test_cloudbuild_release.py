"""cloudbuild.yaml's release moves every service or none: its own step scripts run here, with
stand-ins for gcloud and curl that record each call and fail where a test says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STEPS = {
    step["id"]: step["script"] for step in yaml.safe_load((REPO / "cloudbuild.yaml").read_text())["steps"]
}
CATALOGUE = yaml.safe_load((REPO / "terraform" / "entrypoints.yaml").read_text())
PREFIX = "jt-dev-"
SERVICES = [PREFIX + key.replace("_", "-") for key in CATALOGUE]

# gcloud: "describe" answers with a revision serving 100% and this build's tag; "update-traffic"
# records the call and fails for the services named in FAIL_PROMOTE / FAIL_ROLLBACK.
FAKE_GCLOUD = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:2] == ["auth", "print-identity-token"]:
    print("id-token"); sys.exit(0)
service = args[3] if len(args) > 3 else ""
if args[:3] == ["run", "services", "describe"]:
    print(json.dumps({"status": {"url": f"https://{service}.run.app", "traffic": [
        {"revisionName": f"{service}-00001", "percent": 100},
        {"revisionName": f"{service}-00002", "tag": os.environ["TAG"], "url": f"https://{os.environ['TAG']}---{service}.run.app"},
    ]}}))
    sys.exit(0)
if args[:3] == ["run", "services", "update-traffic"]:
    if "--to-tags" in args and service in os.environ.get("FAIL_PROMOTE", "").split(","):
        sys.exit(1)
    if "--to-revisions" in args and service in os.environ.get("FAIL_ROLLBACK", "").split(","):
        sys.exit(1)
sys.exit(0)
"""
# curl: the HTTP status of a probe, 503 for the hosts named in UNHEALTHY.
FAKE_CURL = """#!/usr/bin/env python3
import os, sys
url = sys.argv[-1]
print("503" if any(h and h in url for h in os.environ.get("UNHEALTHY", "").split(",")) else "401", end="")
"""


def script(step: str, workspace: Path) -> str:
    return STEPS[step].replace("/workspace", str(workspace)).replace("/venv/bin/python", sys.executable)


@pytest.fixture
def release(tmp_path: Path):
    """Runs release steps in a workspace where the plan ran and every candidate passed its smoke test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("gcloud", FAKE_GCLOUD), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text.replace("#!/usr/bin/env python3", f"#!{sys.executable}"))
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "_PREFIX": PREFIX,
        "_REGION": "europe-west1",
        "BUILD_ID": "0123456789abcdef",
        "TAG": "b-01234567",
        "PROJECT_ID": "jobtrail-dev",
        "PROBE_RETRY_SECONDS": "0",
    }

    def run(step: str, **faults: str) -> tuple[int, str, list[str]]:
        calls.write_text("")
        done = subprocess.run(
            ["bash", "-c", script(step, tmp_path)],
            cwd=REPO,
            env={**env, **faults},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr, calls.read_text().splitlines()

    code, out, _ = run("deploy-plan")
    assert code == 0, out
    for key in CATALOGUE:
        (tmp_path / "deploy" / f"{key}.previous").write_text(f"{PREFIX}{key.replace('_', '-')}-00001=100\n")
    (tmp_path / "deploy" / "smoke-candidates.verdict").write_text("pass\n")
    return run


def rolled_back(calls: list[str]) -> set[str]:
    return {c.split()[3] for c in calls if "update-traffic" in c and "--to-revisions" in c}


def test_the_plan_stages_only_the_deployable_source(release, tmp_path: Path) -> None:
    staged = {
        p.relative_to(tmp_path / "deploy" / "source").parts[0]
        for p in (tmp_path / "deploy" / "source").rglob("*")
    }
    assert staged == {"functions", "services", "infra", "pyproject.toml", "requirements.txt", "README.md"}


def test_a_release_whose_promotions_pass_moves_every_service(release) -> None:
    code, out, calls = release("promote-or-rollback")
    assert code == 0, out
    assert sorted(c.split()[3] for c in calls if "--to-tags" in c) == sorted(SERVICES)
    assert not rolled_back(calls)


def test_a_failed_promotion_sends_every_service_back_and_says_so(release) -> None:
    failing = SERVICES[3]
    code, out, calls = release("promote-or-rollback", FAIL_PROMOTE=failing)
    assert code == 1
    assert rolled_back(calls) == set(SERVICES)
    for service in SERVICES:
        assert f"rolled back  {service} -> {service}-00001=100" in out


def test_a_promoted_service_failing_its_check_sends_every_service_back(release) -> None:
    code, out, calls = release("verify-promoted", UNHEALTHY=SERVICES[1])
    assert code == 1
    assert f"FAIL  {SERVICES[1]}: 503" in out
    assert rolled_back(calls) == set(SERVICES)


def test_one_rollback_failing_does_not_stop_the_others(release) -> None:
    code, out, calls = release("verify-promoted", UNHEALTHY=SERVICES[0], FAIL_ROLLBACK=SERVICES[2])
    assert code == 1
    assert rolled_back(calls) == set(SERVICES)  # every one was tried
    assert f"ROLLBACK FAILED {SERVICES[2]}" in out
    assert sum(line.startswith("rolled back") for line in out.splitlines()) == len(SERVICES) - 1


def test_a_healthy_release_says_so(release) -> None:
    code, out, calls = release("verify-promoted")
    assert code == 0, out
    assert "released: every service serves build b-01234567" in out
    assert not rolled_back(calls)
