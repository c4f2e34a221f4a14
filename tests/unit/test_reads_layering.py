"""The read layer sits under the API and the CLI: both call it, neither calls the other, and it
knows nothing of HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_cli_calls_the_read_layer_not_the_api():
    imports = imported_modules(ROOT / "services" / "cli.py")
    assert not {m for m in imports if m == "services.api" or m.startswith("services.api.")}
    assert {"services.reads.jobs", "services.reads.dead_letters", "services.reads.queues"} <= imports


def test_the_read_layer_knows_neither_the_api_nor_flask():
    for path in (ROOT / "services" / "reads").glob("*.py"):
        imports = imported_modules(path)
        assert not {m for m in imports if m.startswith(("services.api", "flask", "services.cli"))}, path
