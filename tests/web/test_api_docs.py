"""/docs and /redoc in real Chromium with every request leaving the machine refused:
they render from the server's own assets, and Swagger UI's "Authorize" sends the key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.conftest import ServerProcess


@pytest.fixture
def offline_page(browser: Browser, web_server: ServerProcess) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A page whose requests reach only the test server; anything else is aborted and recorded.
    Also yields the page's console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    outside: list[str] = []

    def only_local(route: Route) -> None:
        url = route.request.url
        if url.startswith(web_server.url + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page, outside, problems
    context.close()


def test_swagger_ui_renders_offline_and_authorize_sends_the_key(
    offline_page: tuple[Page, list[str], list[str]], web_server: ServerProcess
) -> None:
    page, outside, problems = offline_page
    key = web_server.create_key("approver")
    page.goto(web_server.url + "/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="Faramesh").wait_for()

    page.locator("button.authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input").first.fill(key)
    dialog.locator("button.authorize").click()
    dialog.locator("button.btn-done").click()

    operation = page.locator(".opblock-get").filter(has=page.locator("[data-path='/v1/actions']")).first
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    with page.expect_request(lambda r: r.url.startswith(web_server.url + "/v1/actions")) as sent:
        operation.locator("button.execute").click()
    assert sent.value.headers.get("authorization") == f"Bearer {key}"
    operation.locator(".live-responses-table .response-col_status").filter(has_text="200").wait_for()
    assert outside == [] and problems == []


def test_redoc_renders_offline(offline_page: tuple[Page, list[str], list[str]], web_server: ServerProcess) -> None:
    page, outside, problems = offline_page
    page.goto(web_server.url + "/redoc")
    page.locator("h1").filter(has_text="Faramesh").first.wait_for()
    page.get_by_text("Submit an action for a decision").first.wait_for()
    assert outside == []
    # ReDoc's bundle always asks for its makers' logo from their CDN; the page's CSP stops
    # that before it leaves the machine (and ReDoc shows the link's text instead).
    for problem in problems:
        assert "https://cdn.redoc.ly/" in problem and "Content Security Policy" in problem, problem
