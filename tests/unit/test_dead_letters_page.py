"""The dead-letters page is served like the others (no database: the page loads its data itself),
under the same strict policy, and loads nothing from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

from services.api import create_app
from services.clients import Clients
from services.runtime import Runtime
from services.settings import Settings

STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"
PAGE_FILES = ("dead_letters.html", "dead_letters.js", "dead_letters.css")


def test_the_page_and_its_assets_are_served_under_the_strict_policy():
    settings = Settings(metrics_exporter="none")
    client = create_app(Runtime(settings, Clients(settings))).test_client()
    page = client.get("/dead-letters")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b"/assets/dashboard/dead_letters.js" in page.data and b'id="login"' in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    for asset, mimetype in (("dead_letters.js", "text/javascript"), ("dead_letters.css", "text/css")):
        response = client.get(f"/assets/dashboard/{asset}")
        assert response.status_code == 200 and response.mimetype == mimetype
        response.close()
    # The main page's DLQ count leads here.
    assert 'href="/dead-letters"' in (STATIC / "index.html").read_text()


def test_the_page_loads_nothing_from_elsewhere_and_has_no_inline_script_or_style():
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|import\s""")
    for name in PAGE_FILES:
        assert not external.search((STATIC / name).read_text()), name
    html = (STATIC / "dead_letters.html").read_text()
    assert not re.search(r"<script>|<style|\sstyle=|\son[a-z]+=", html)


def test_every_page_loads_the_shared_script_first_under_the_same_policy():
    """common.js holds what the pages share (API client, sign-in, formatting); each page's own
    script reads it, so it must come first, from this origin."""
    settings = Settings(metrics_exporter="none")
    client = create_app(Runtime(settings, Clients(settings))).test_client()
    for path, own in (
        ("/", "app.js"),
        ("/jobs/j1", "job.js"),
        ("/dead-letters", "dead_letters.js"),
        ("/audit", "audit.js"),
    ):
        page = client.get(path)
        scripts = re.findall(
            r'<script src="/assets/dashboard/([a-z_]+\.js)" defer></script>', page.get_data(as_text=True)
        )
        assert scripts == ["common.js", own], path
        assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
        assert "window.jobtrail" in (STATIC / own).read_text(), own
    shared = client.get("/assets/dashboard/common.js")
    assert shared.status_code == 200 and shared.mimetype == "text/javascript"
    shared.close()
    assert not re.search(r"""(?:https?:)?//[a-z]|import\s""", (STATIC / "common.js").read_text())
