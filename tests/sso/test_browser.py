"""Single sign-on in a real browser (Debian's Chromium through Playwright): a real server
process and the test identity provider on loopback, on another site (localhost against
127.0.0.1), so the browser's SameSite rules apply as they would with a real provider.
The person signs in, decides, sees themselves named on the action page and its audit
trail, and signs out here and at the provider."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ServerProcess, auth
from tests.sso.conftest import SSO_POLICY, people
from tests.sso.provider import Provider

# Where to write the screenshots docs/sso.md shows, when asked (FARAMESH_SCREENSHOTS=docs/images).
SHOTS = os.environ.get("FARAMESH_SCREENSHOTS")


@pytest.fixture
def idp() -> Iterator[Provider]:
    provider = Provider(users=people(), public_host="localhost").start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def server(idp: Provider, tmp_path: Path) -> Iterator[ServerProcess]:
    env = idp.env(oidc_recheck="5m") | {"FARAMESH_SECRET_KEY": "browser-test-secret-" + "x" * 20}
    srv = ServerProcess(f"sqlite:///{tmp_path / 'sso.db'}", SSO_POLICY, env=env, cwd=tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


def sign_in(page: Page, server: ServerProcess, user: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    assert page.url.startswith("http://localhost:")  # the provider, another site
    page.get_by_label("User").select_option(user)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_person_signs_in_decides_and_is_named_on_the_action_and_its_audit_trail(
    server: ServerProcess,
    idp: Provider,
    page: Page,
) -> None:
    agent = server.create_key("agent", name="billing-bot")
    r = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 250, "customer": "cus_42"}},
        headers=auth(agent),
        timeout=10,
    )
    action = r.json()
    assert action["status"] == "pending_approval"

    sign_in(page, server, "alice")
    # Back on the dashboard, past the cross-site return, with the person in the header.
    expect(page).to_have_url(server.url + "/")
    expect(page.locator("#who")).to_contain_text("Alice Example")
    expect(page.locator("#who")).to_contain_text("alice@example.com")
    expect(page.locator("#who")).to_contain_text("approver")

    page.locator(f'tr[data-id="{action["id"]}"]').get_by_role("link").first.click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Approved.")).to_be_visible()
    expect(page.get_by_text("person:alice@example.com (Alice Example)").first).to_be_visible()
    shot(page, "sso-action.png")

    done = httpx.get(server.url + f"/v1/actions/{action['id']}", headers=auth(server.admin_key or ""), timeout=10)
    assert done.json()["decided_by"] == "person:alice@example.com (Alice Example)"
    events = httpx.get(
        server.url + f"/v1/actions/{action['id']}/events", headers=auth(server.admin_key or ""), timeout=10
    ).json()["events"]
    approved = next(e for e in events if e["event"] == "action.approved")
    assert approved["actor"] == "person:alice@example.com (Alice Example)"
    assert approved["data"]["person"] == {
        "issuer": idp.issuer,
        "subject": "u-alice",
        "email": "alice@example.com",
        "name": "Alice Example",
    }

    # Log out: ended here, and the provider's own logout is offered.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="You have signed out of Faramesh")).to_be_visible()
    page.get_by_role("link", name="Also sign out of your identity provider").click()
    expect(page.get_by_role("heading", name="Signed out of the test provider")).to_be_visible()
    assert idp.logouts and idp.logouts[-1]["id_token_hint"]
    page.get_by_role("link", name="Back").click()
    expect(page).to_have_url(server.url + "/login")
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")


def test_person_in_no_group_sees_why_in_the_browser(server: ServerProcess, page: Page) -> None:
    sign_in(page, server, "dave")
    expect(page.get_by_role("heading", name="No access to Faramesh")).to_be_visible()
    expect(page.get_by_text("not a member of any group that may use Faramesh")).to_be_visible()
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
