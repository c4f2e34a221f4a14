"""What would be uploaded to build the Cloud Run images, and what the wheel holds: the deployable
package only, never development tooling."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from infra.deploy_source import REPO, deployable_files, stage

NEVER_SHIPPED = ("devtools", "tests", "bench", "docs", "terraform", "runbooks", "scripts", ".git", ".venv")


def test_the_uploaded_source_is_the_deployable_package_only() -> None:
    files = deployable_files()
    top = {f.parts[0] for f in files}
    assert top == {"functions", "services", "infra", "pyproject.toml", "requirements.txt", "README.md"}
    assert not [f for f in files if f.parts[0] in NEVER_SHIPPED]
    assert not [f for f in files if "__pycache__" in f.parts or f.suffix == ".pyc"]
    # Every entry point Cloud Build deploys is in it, with the dashboard's static files.
    sources = {
        Path(s["source"]) for s in yaml.safe_load((REPO / "terraform/entrypoints.yaml").read_text()).values()
    }
    assert sources <= set(files)
    assert Path("services/api/static/index.html") in files


def test_nothing_deployable_imports_development_tooling() -> None:
    for path in deployable_files():
        if path.suffix == ".py":
            imports = re.findall(r"^\s*(?:from|import)\s+devtools\b", (REPO / path).read_text(), re.M)
            assert not imports, f"{path} imports devtools"


def test_staging_copies_exactly_that(tmp_path: Path) -> None:
    staged = stage(tmp_path / "source")
    copied = sorted(
        p.relative_to(tmp_path / "source") for p in (tmp_path / "source").rglob("*") if p.is_file()
    )
    assert copied == staged


def test_the_wheel_leaves_development_tooling_out(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("jobtrail-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("services/") for n in names)
    assert not [n for n in names if n.split("/", 1)[0] in NEVER_SHIPPED]
