"""The source a Cloud Run image is built from: the deployable package and nothing else.

Cloud Build stages it (``python -m infra.deploy_source DIR``) and deploys with ``gcloud run deploy
--source DIR``, so development tooling (devtools/), tests, benchmarks, docs and Terraform never
reach an image, whatever the build's workspace holds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What the buildpack needs: the packages pyproject.toml installs, and the files it installs from
# (requirements.txt is "." = this project; pyproject.toml names README.md as its readme).
PACKAGES = ("functions", "services", "infra")
FILES = ("pyproject.toml", "requirements.txt", "README.md")
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def deployable_files(repo: Path = REPO) -> list[Path]:
    """Every file of the deployable source, relative to ``repo``, sorted."""
    found = [Path(name) for name in FILES]
    for package in PACKAGES:
        for path in (repo / package).rglob("*"):
            relative = path.relative_to(repo)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix != ".pyc":
                found.append(relative)
    return sorted(found)


def stage(destination: Path, repo: Path = REPO) -> list[Path]:
    """Copy the deployable source into ``destination`` (which must not exist yet)."""
    files = deployable_files(repo)
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / relative, target)
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m infra.deploy_source DESTINATION")
    for staged in stage(Path(sys.argv[1])):
        print(staged)
