"""Fixtures of the end-to-end tests: one local stack for the session, Debian's Chromium, and pages
signed in as someone. Screenshots go to artifacts/e2e/ (gitignored)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devtools.local.stack import LocalStack, running_stack
from services.auth import mint_token
from services.settings import Settings
from tests.e2e.support import ARTIFACTS, CHROMIUM_ARGS, DESKTOP, RECORDER, SLOW_WORLD, WAIT_MS, world


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # THREADS: functions-framework's gthread pool; each open stream holds one of its threads.
    with running_stack(tmp_path_factory.mktemp("stack"), extra_env={"THREADS": "32"}) as local:
        world(local, SLOW_WORLD)
        yield local


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Browser, stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``open_page(sub, role)``: a fresh browser context signed in as ``sub``, stream live."""
    pages: list[tuple[Page, list[str]]] = []

    def open_as(sub: str, role: str = "user") -> Page:
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append((page, errors))
        page.goto(f"{stack.url('api')}/")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()  # nothing is shown without a token
        page.fill("#token-input", mint_token(Settings(), sub, role))
        page.click("#login-submit")
        expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(page.locator("#who-name")).to_have_text(sub)
        page.evaluate(RECORDER)
        return page

    yield open_as
    for i, (page, errors) in enumerate(pages):
        page.screenshot(path=ARTIFACTS / f"{request.node.name}-{i}-end.png", full_page=True)
        page.context.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"
