"""Dashboard test fixtures: Debian's Chromium driven by Playwright, a server with the
dashboard test policy, and helpers to log in and submit actions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import IN_CI, ServerProcess, auth

CHROMIUM = Path("/usr/bin/chromium")
WEB_POLICY = Path(__file__).parent / "dashboard_policy.yaml"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(message + "; browser tests are required under CI=true")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright's sync API, one per test module.

    Launched here rather than through pytest-playwright's session-wide fixtures: the
    sync API keeps an event loop marked as running on the main thread for as long as
    Playwright lives, which would break `asyncio.run()` in test modules that run later.
    """
    require_chromium()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page for each test, 1280 pixels wide."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module, on the dashboard test policy; tests make their own keys."""
    tmp = tmp_path_factory.mktemp("web")
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", WEB_POLICY, cwd=tmp).start()
    yield srv
    srv.stop()


def submit(server: ServerProcess, key: str, tool: str = "refund", operation: str = "process", **kw: Any) -> Any:
    body = {"tool": tool, "operation": operation, "params": kw.pop("params", {"amount": 500}), "reattach": False, **kw}
    r = httpx.post(server.url + "/v1/actions", json=body, headers=auth(key), timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def get_action(server: ServerProcess, key: str, action_id: str) -> Any:
    r = httpx.get(server.url + f"/v1/actions/{action_id}", headers=auth(key), timeout=10)
    r.raise_for_status()
    return r.json()


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def http_login(server: ServerProcess, key: str) -> httpx.Client:
    """An HTTP client holding a dashboard session (for checks below the browser)."""
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=10)
    page = client.get("/login")
    r = client.post("/login", data={"key": key, "csrf_token": csrf_of(page.text), "next": "/"})
    assert r.status_code == 303, r.text
    return client
