"""The dashboard in a real browser (Debian's Chromium through Playwright) against the
real server: login, the live queue, decisions, escaping, CSRF and layout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from faramesh.sdk.client import ExecutionGovernorClient
from tests.conftest import ServerProcess, auth
from tests.web.conftest import WEB_POLICY, get_action, submit

HOSTILE = "<img src=x onerror=alert(1)>"


def login(page: Page, server: ServerProcess, key: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()


def record_dialogs(page: Page) -> list[str]:
    seen: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


def test_live_queue_approve_and_sdk_sees_approved(start_server: Any, page: Page) -> None:
    server: ServerProcess = start_server(policy=WEB_POLICY)
    agent = ExecutionGovernorClient(base_url=server.url, api_key=server.create_key("agent", name="billing-bot"))
    login(page, server, server.create_key("approver", name="alice"))

    expect(page.get_by_text("No actions waiting")).to_be_visible()
    expect(page).to_have_title("(0) Pending approvals · Faramesh")
    page.evaluate("window.notReloaded = true")

    action = agent.submit_action(
        tool="refund", operation="process", params={"amount": 150}, context={"agent_id": "billing-bot"}
    )
    assert action["status"] == "pending_approval"
    row = page.locator(f'tr[data-id="{action["id"]}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("refund")
    expect(row).to_contain_text("billing-bot")
    expect(row).to_contain_text("high")
    expect(row).to_contain_text("Large refunds need approval")
    expect(page).to_have_title("(1) Pending approvals · Faramesh")
    expect(page.get_by_text("No actions waiting")).to_be_hidden()
    assert page.evaluate("window.notReloaded") is True  # it arrived live, not by a reload

    row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("refund")
    page.get_by_label("Reason").fill("order checked")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#flash")).to_contain_text("Approved.")
    expect(page.locator("#decision-note")).to_contain_text("approved")
    fetched = agent.get_action(action["id"])
    assert fetched["status"] == "approved"
    assert fetched["decision_reason"] == "order checked"

    # Back on the queue it is gone; a second action shows up and leaves live.
    page.get_by_role("link", name="Queue").click()
    expect(page.get_by_text("No actions waiting")).to_be_visible()
    second = agent.submit_action(tool="refund", operation="process", params={"amount": 900}, context={})
    expect(page.locator(f'tr[data-id="{second["id"]}"]')).to_be_visible()
    expect(page).to_have_title("(1) Pending approvals · Faramesh")
    approver2 = server.create_key("approver", name="bob")
    httpx.post(
        server.url + f"/v1/actions/{second['id']}/deny", json={"reason": "duplicate"}, headers=auth(approver2)
    ).raise_for_status()
    expect(page.locator(f'tr[data-id="{second["id"]}"]')).to_have_count(0)
    expect(page.get_by_text("No actions waiting")).to_be_visible()
    expect(page).to_have_title("(0) Pending approvals · Faramesh")


def test_deny_requires_a_reason(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key)
    login(page, web_server, web_server.create_key("approver"))
    page.goto(web_server.url + f"/actions/{action['id']}")

    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_text("A reason is required to deny.")).to_be_visible()
    expect(page.get_by_label("Reason")).to_be_focused()
    assert get_action(web_server, agent_key, action["id"])["status"] == "pending_approval"

    page.get_by_label("Reason").fill("customer already refunded")
    page.get_by_role("button", name="Deny").click()
    expect(page.locator("#flash")).to_contain_text("Denied.")
    denied = get_action(web_server, agent_key, action["id"])
    assert denied["status"] == "denied"
    assert denied["reason"] == "customer already refunded"


def test_hostile_strings_are_shown_as_text_and_never_run(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    login(page, web_server, web_server.create_key("approver"))
    dialogs = record_dialogs(page)
    # Arrives live on the queue (built by the page's script) ...
    action = submit(
        web_server,
        agent_key,
        params={"amount": 500, "note": HOSTILE, HOSTILE: "<script>alert(2)</script>"},
        context={"agent_id": "<svg onload=alert(3)>", "comment": "</pre><img src=x onerror=alert(4)>"},
    )
    row = page.locator(f'tr[data-id="{action["id"]}"]')
    expect(row).to_contain_text("<svg onload=alert(3)>")
    # ... and is rendered by the server on a fresh load and on the detail page.
    page.reload()
    expect(row).to_contain_text("<svg onload=alert(3)>")
    page.goto(web_server.url + f"/actions/{action['id']}")
    expect(page.locator("#params")).to_contain_text(HOSTILE)
    expect(page.locator("#params")).to_contain_text("<script>alert(2)</script>")
    expect(page.locator("#context")).to_contain_text("</pre><img src=x onerror=alert(4)>")
    assert page.locator("main img, main svg, main script").count() == 0
    page.wait_for_timeout(300)  # give any injected handler the chance to fire
    assert dialogs == []


def test_agent_key_is_refused_at_login(page: Page, web_server: ServerProcess) -> None:
    login(page, web_server, web_server.create_key("agent", agent_id="bot"))
    expect(page.get_by_role("alert")).to_contain_text("Agent keys cannot log in")
    expect(page).to_have_url(web_server.url + "/login")
    page.goto(web_server.url + "/")
    expect(page).to_have_url(web_server.url + "/login")
    expect(page.get_by_label("API key")).to_be_visible()

    login(page, web_server, "fm_not-a-real-key")
    expect(page.get_by_role("alert")).to_contain_text("not valid")


def test_post_without_csrf_token_is_refused(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key)
    login(page, web_server, web_server.create_key("approver"))
    page.goto(web_server.url + f"/actions/{action['id']}")
    # Same-origin requests from the logged-in page carry the session cookie but no token.
    statuses = page.evaluate(
        """async (id) => {
            const post = (body) => fetch('/actions/' + id + '/decide', {method: 'POST', body: new URLSearchParams(body)});
            const missing = await post({decision: 'approve'});
            const wrong = await post({decision: 'approve', csrf_token: 'forged'});
            const logout = await fetch('/logout', {method: 'POST'});
            return [missing.status, wrong.status, logout.status];
        }""",
        action["id"],
    )
    assert statuses == [403, 403, 403]
    assert get_action(web_server, agent_key, action["id"])["status"] == "pending_approval"
    page.reload()
    expect(page.get_by_role("button", name="Approve")).to_be_visible()  # still logged in


def test_decision_made_elsewhere_updates_the_page(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key)
    login(page, web_server, web_server.create_key("approver", name="alice"))
    page.goto(web_server.url + f"/actions/{action['id']}")
    expect(page.get_by_role("button", name="Approve")).to_be_visible()

    other = web_server.create_key("approver", name="bob")
    httpx.post(
        web_server.url + f"/v1/actions/{action['id']}/approve", json={"reason": "fine"}, headers=auth(other)
    ).raise_for_status()
    expect(page.locator("#decision-note")).to_contain_text("approved by key:")
    expect(page.locator("#decision-note")).to_contain_text("(bob)")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.locator("#timeline")).to_contain_text("Approved")
    expect(page.locator("#timeline")).to_contain_text("fine")


def test_losing_a_race_shows_who_won(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key)
    login(page, web_server, web_server.create_key("approver", name="alice"))
    page.route("**/ui/events*", lambda route: route.abort())  # no live update: the form stays up
    page.goto(web_server.url + f"/actions/{action['id']}")
    other = web_server.create_key("approver", name="carol")
    httpx.post(web_server.url + f"/v1/actions/{action['id']}/approve", headers=auth(other)).raise_for_status()

    page.get_by_label("Reason").fill("looks wrong")
    page.get_by_role("button", name="Deny").click()
    expect(page.locator("#flash")).to_contain_text("Already approved by key:")
    expect(page.locator("#flash")).to_contain_text("(carol)")
    expect(page.get_by_role("heading", level=1)).to_contain_text("refund")  # the page, not an error page
    assert get_action(web_server, agent_key, action["id"])["status"] == "approved"


def test_quorum_progress_and_expiry_countdown(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key, tool="payout", operation="send", params={"amount": 10})
    login(page, web_server, web_server.create_key("approver", name="alice"))
    row = page.locator(f'tr[data-id="{action["id"]}"]')
    expect(row).to_contain_text("0 of 2 approvals")
    expect(row.locator("time[data-expires]")).to_contain_text(" left")
    expect(row).to_contain_text("critical")

    page.goto(web_server.url + f"/actions/{action['id']}")
    expect(page.locator("#quorum")).to_contain_text("0 of 2 needed")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#flash")).to_contain_text("Your approval was recorded: 1 of 2 needed.")
    expect(page.locator("#quorum")).to_contain_text("1 of 2 needed")
    expect(page.locator("#timeline")).to_contain_text("Approval recorded")

    other = web_server.create_key("approver", name="bob")
    httpx.post(web_server.url + f"/v1/actions/{action['id']}/approve", headers=auth(other)).raise_for_status()
    expect(page.locator("#quorum")).to_contain_text("2 of 2 needed")
    expect(page.locator("#decision-note")).to_contain_text("approved")
    assert get_action(web_server, agent_key, action["id"])["status"] == "approved"


def test_the_action_page_shows_edited_arguments_live(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key, tool="payout", operation="send", params={"amount": 30, "to": "acct-1"})
    login(page, web_server, web_server.create_key("approver", name="bea"))
    page.goto(web_server.url + f"/actions/{action['id']}")
    expect(page.locator("#params")).to_contain_text("acct-1")
    expect(page.locator("#params-live-change")).to_be_hidden()

    ann = web_server.create_key("approver", name="ann")
    edited = httpx.post(
        web_server.url + f"/v1/actions/{action['id']}/approve",
        json={"params": {"amount": 30, "to": "acct-7"}},
        headers=auth(ann),
    )
    edited.raise_for_status()
    new_hash = edited.json()["request_hash"]
    expect(page.locator("#params")).to_contain_text("acct-7")
    expect(page.locator("#params")).not_to_contain_text("acct-1")
    expect(page.locator("#params-live-change")).to_be_visible()
    expect(page.locator("#params-live-change")).to_contain_text("(ann)")
    expect(page.locator("#params-before")).to_contain_text("acct-1")
    expect(page.locator("#flash")).to_contain_text("The arguments of this action changed")
    expect(page.locator("#request-hash")).to_have_text(new_hash)
    expect(page.locator("#shown-hash")).to_have_value(new_hash)
    expect(page.locator("#quorum-given")).to_have_text("1")

    # The form is now bound to the arguments on screen, so this vote counts for them.
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#flash")).to_contain_text("Approved.")
    after = get_action(web_server, agent_key, action["id"])
    assert after["status"] == "approved" and after["params"] == {"amount": 30, "to": "acct-7"}


def test_keyboard_only_review_and_approve(page: Page, web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key, params={"amount": 321})
    page.goto(web_server.url + "/login")
    expect(page.get_by_label("API key")).to_be_focused()  # autofocus
    page.keyboard.type(web_server.create_key("approver"))
    page.keyboard.press("Enter")
    link = page.locator(f'tr[data-id="{action["id"]}"] a')
    link.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(web_server.url + f"/actions/{action['id']}")
    page.get_by_label("Reason").focus()
    page.keyboard.type("checked by keyboard")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Approve")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#flash")).to_contain_text("Approved.")
    assert get_action(web_server, agent_key, action["id"])["status"] == "approved"


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_screen(page: Page, web_server: ServerProcess, width: int) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(
        web_server, agent_key, params={"amount": 999, "memo": "x" * 300}, context={"agent_id": "agent-" + "y" * 80}
    )
    page.set_viewport_size({"width": width, "height": 900})
    login(page, web_server, web_server.create_key("admin"))
    for path in ("/", f"/actions/{action['id']}", "/history", "/policy", "/admin/keys", "/admin/webhooks"):
        page.goto(web_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px wide"
    page.goto(web_server.url + "/")
    expect(page.locator(f'tr[data-id="{action["id"]}"]')).to_be_visible()


def test_log_out_ends_the_session(page: Page, web_server: ServerProcess) -> None:
    login(page, web_server, web_server.create_key("approver"))
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "faramesh_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["expires"] > 0  # a persistent cookie with an expiry, not a browser-session one
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(web_server.url + "/login")
    expect(page.locator("#flash")).to_contain_text("You have logged out.")
    # The old cookie, replayed, no longer opens a page.
    r = httpx.get(web_server.url + "/history", cookies={"faramesh_session": cookie["value"]})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")
