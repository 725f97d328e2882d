"""The approver's day in a real browser (Debian's Chromium) against the real server: the
queue's columns, filters and sorts, hostile lengths, keyboard shortcuts with
confirmation, approve with edits, bulk decisions with a row changed meanwhile, a grant
created from the action page, and the phone layout."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from faramesh.canonical import request_hash
from tests.conftest import ServerProcess, auth
from tests.web.conftest import get_action, submit
from tests.web.test_browser import HOSTILE, login, record_dialogs


def row_of(page: Page, action: dict[str, Any]) -> Any:
    return page.locator(f'tr[data-id="{action["id"]}"]')


def test_queue_rows_show_the_arguments_that_matter_first(page: Page, web_server: ServerProcess) -> None:
    agent = web_server.create_key("agent")
    login(page, web_server, web_server.create_key("approver"))
    dialogs = record_dialogs(page)
    # "note" comes first in the params, but the rule tests "amount": amount is shown first.
    params = {"note": HOSTILE, "customer": "cus_123", "amount": 4321.5}
    loaded = submit(web_server, agent, params=params)
    page.reload()
    for built_by in ("server", "live"):
        action = loaded if built_by == "server" else submit(web_server, agent, params=params)
        row = row_of(page, action)
        args = row.locator(".args")
        expect(args.locator(".arg").first).to_have_text("amount 4,321.50")
        expect(args).to_contain_text("note " + HOSTILE)  # shown as text, never markup
        expect(args).to_contain_text("customer cus_123")
        assert args.locator(".clip").get_attribute("title") == f"amount 4,321.50 · note {HOSTILE} · customer cus_123"
        expect(row.locator('td[data-label="Expires"]')).to_have_text(re.compile(r"^(never|\d+\w.* left)$"))
        # No presence from the server: the row says nothing about it.
        expect(row.locator(".presence")).to_be_hidden()
    assert row.locator("img, script").count() == 0
    assert dialogs == []


def test_time_left_and_presence_when_the_server_sends_it(page: Page, web_server: ServerProcess) -> None:
    agent = web_server.create_key("agent")
    action = submit(web_server, agent, tool="payout", operation="send", params={"amount": 10})
    login(page, web_server, web_server.create_key("approver"))
    row = row_of(page, action)
    expect(row.locator("time[data-expires]")).to_contain_text(" left")
    # The page renders presence from the action when it has one (from the live feed).
    page.evaluate(
        """() => {
        const el = document.querySelector('tr[data-id] .presence');
        el.hidden = false; el.dataset.seenAt = new Date(Date.now() - 12 * 60 * 1000).toISOString();
    }"""
    )
    expect(row.locator(".presence")).to_have_text("agent stopped waiting 12m ago")


def test_filters_and_sorts(page: Page, start_server: Any) -> None:
    from tests.web.conftest import WEB_POLICY

    server: ServerProcess = start_server(policy=WEB_POLICY)
    login(page, server, server.create_key("approver"))
    a_key, b_key = server.create_key("agent", agent_id="alpha-bot"), server.create_key("agent", agent_id="beta-bot")
    high = submit(server, a_key, params={"amount": 700})
    critical = submit(server, b_key, tool="payout", operation="send", params={"amount": 5})
    newest = submit(server, a_key, params={"amount": 800})
    page.reload()
    ids = lambda: page.locator("#queue-rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)")  # noqa: E731
    assert ids() == [newest["id"], critical["id"], high["id"]]
    page.get_by_label("Sort", exact=True).select_option("oldest")
    page.get_by_role("button", name="Apply").click()
    assert ids() == [high["id"], critical["id"], newest["id"]]
    page.get_by_label("Sort", exact=True).select_option("risk")
    page.get_by_role("button", name="Apply").click()
    assert ids()[0] == critical["id"]
    page.get_by_label("Sort", exact=True).select_option("expiry")
    page.get_by_role("button", name="Apply").click()
    assert ids()[0] == critical["id"]  # the only one with a deadline
    page.goto(server.url + "/?risk=high")
    assert sorted(ids()) == sorted([high["id"], newest["id"]])
    page.goto(server.url + "/?agent=beta-bot")
    assert ids() == [critical["id"]]
    # A live arrival that does not fit the filter stays out of the filtered view.
    other = submit(server, a_key, params={"amount": 900})
    mine = submit(server, b_key, params={"amount": 901})
    expect(row_of(page, mine)).to_be_visible()
    expect(row_of(page, other)).to_have_count(0)
    page.goto(server.url + "/?tool=payout")
    assert ids() == [critical["id"]]
    page.goto(server.url + "/?risk=severe")
    expect(page.locator(".flash-error")).to_contain_text("Unknown risk")


LONG_TOOL = "t" * 60 + "." + "x" * 67  # 128 characters, no place to break
LONG_AGENT = "agent-" + "y" * 194
LONG_REASON = "z" * 1900


@pytest.mark.parametrize("width", [1280, 390])
def test_hostile_lengths_never_break_a_table(page: Page, start_server: Any, tmp_path: Any, width: int) -> None:
    policy = tmp_path / "long.yaml"
    policy.write_text(
        f'rules:\n  - match: {{tool: "{LONG_TOOL}"}}\n    require_approval: true\n    reason: "{"r" * 300}"\n'
        "  - match: {tool: refund}\n    require_approval: true\n"
    )
    server: ServerProcess = start_server(policy=policy)
    agent = server.create_key("agent")
    held = submit(server, agent, tool=LONG_TOOL, operation="o" * 128, agent_id=LONG_AGENT, params={"k" * 60: "v" * 900})
    denied = submit(server, agent, params={"amount": 1})
    r = httpx.post(
        server.url + f"/v1/actions/{denied['id']}/deny",
        json={"reason": LONG_REASON},
        headers=auth(server.create_key("approver")),
    )
    r.raise_for_status()
    page.set_viewport_size({"width": width, "height": 900})
    login(page, server, server.create_key("approver"))
    for path, action, full_reason in (("/", held, "r" * 300), ("/history", denied, LONG_REASON)):
        page.goto(server.url + path)
        row = row_of(page, action)
        expect(row).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
        # Every long value is cut to one line, whole in its title.
        link = row.locator("a.action-link")
        assert link.get_attribute("title") == f"{action['tool']} {action['operation']}"
        reason = row.locator(".reason .clip")
        assert reason.get_attribute("title") == full_reason
        assert reason.evaluate("el => el.scrollWidth > el.clientWidth")  # cut, not wrapped
        line = reason.evaluate("el => parseFloat(getComputedStyle(el).lineHeight) || 24")
        assert reason.bounding_box()["height"] <= line + 2
        if width > 760:
            assert row.bounding_box()["height"] < 120, f"{path}: a row {row.bounding_box()['height']}px tall"
    page.goto(server.url + "/")
    agent_cell = row_of(page, held).locator(".agent .clip")
    assert agent_cell.get_attribute("title") == LONG_AGENT


def test_keyboard_shortcuts_ask_before_deciding(page: Page, web_server: ServerProcess) -> None:
    agent = web_server.create_key("agent")
    first = submit(web_server, agent, params={"amount": 333})
    login(page, web_server, web_server.create_key("approver"))
    page.goto(web_server.url + f"/actions/{first['id']}")
    dialog = page.locator("#confirm-dialog")
    page.locator("body").press("a")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Approve refund process?")
    page.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert get_action(web_server, agent, first["id"])["status"] == "pending_approval"
    # Typing in the reason box is text, not a shortcut.
    page.get_by_label("Reason").fill("")
    page.get_by_label("Reason").press("a")
    expect(dialog).to_be_hidden()
    expect(page.get_by_label("Reason")).to_have_value("a")
    page.get_by_label("Reason").fill("")
    page.locator("h1").click()
    page.keyboard.press("a")
    page.get_by_role("button", name="Yes, approve").click()
    expect(page.locator("#flash")).to_contain_text("Approved.")
    assert get_action(web_server, agent, first["id"])["status"] == "approved"

    second = submit(web_server, agent, params={"amount": 334})
    page.goto(web_server.url + f"/actions/{second['id']}")
    page.keyboard.press("d")  # no reason yet: asks for one instead of denying
    expect(page.get_by_text("A reason is required to deny.")).to_be_visible()
    expect(page.get_by_label("Reason")).to_be_focused()
    page.keyboard.type("duplicate of an earlier refund")
    page.locator("h1").click()
    page.keyboard.press("d")
    expect(dialog).to_contain_text("Deny refund process? Reason: duplicate of an earlier refund")
    page.get_by_role("button", name="Yes, deny").click()
    expect(page.locator("#flash")).to_contain_text("Denied.")
    after = get_action(web_server, agent, second["id"])
    assert after["status"] == "denied" and after["reason"] == "duplicate of an earlier refund"


def test_approve_with_edits_per_field_and_as_json(page: Page, web_server: ServerProcess) -> None:
    agent = web_server.create_key("agent", agent_id="billing-bot")
    action = submit(web_server, agent, params={"amount": 900, "customer": "cus_9", "rush": True})
    login(page, web_server, web_server.create_key("approver", name="edith"))
    page.goto(web_server.url + f"/actions/{action['id']}")
    page.get_by_text("Edit the arguments").click()
    form = page.locator("#edit-fields-form")
    form.get_by_label("amount").fill("450")
    form.get_by_label("rush").select_option("false")
    form.get_by_role("button", name="Review changes").click()
    diff = page.locator("#edit-diff")
    expect(diff.locator('tr[data-path="amount"] .before')).to_have_text("900")
    expect(diff.locator('tr[data-path="amount"] .after')).to_have_text("450")
    expect(diff.locator('tr[data-path="rush"] .after')).to_have_text("false")
    expect(diff.locator('tr[data-path="customer"]')).to_have_count(0)
    edited = {"amount": 450, "customer": "cus_9", "rush": False}
    expected = request_hash(
        agent_id="billing-bot", tool="refund", operation="process", params=edited, context=action["context"]
    )
    expect(page.locator("#edited-hash")).to_have_text(expected)
    page.get_by_role("button", name="Approve these arguments").click()
    expect(page.locator("#flash")).to_contain_text("Approved with your changes.")
    after = get_action(web_server, agent, action["id"])
    assert after["status"] == "approved" and after["params"] == edited and after["request_hash"] == expected
    assert after["original_params"] == {"amount": 900, "customer": "cus_9", "rush": True}

    # As JSON: a bad document is refused with the reason; a good one is reviewed and approved.
    second = submit(web_server, agent, params={"amount": 700, "customer": "cus_7"})
    page.goto(web_server.url + f"/actions/{second['id']}")
    page.get_by_text("Edit the arguments").click()
    page.get_by_label("Params as JSON").fill('{"amount": 700, "amount": 70}')
    page.locator("#edit-json-form").get_by_role("button", name="Review changes").click()
    expect(page.locator("#edit-error")).to_contain_text("not valid JSON")
    page.get_by_label("Params as JSON").fill('{"amount": 650, "customer": "cus_7", "memo": "' + HOSTILE + '"}')
    page.locator("#edit-json-form").get_by_role("button", name="Review changes").click()
    expect(page.locator('#edit-diff tr[data-path="memo"]')).to_have_class("diff-added")
    expect(page.locator('#edit-diff tr[data-path="memo"] .after')).to_contain_text(HOSTILE)
    page.get_by_role("button", name="Approve these arguments").click()
    expect(page.locator("#flash")).to_contain_text("Approved with your changes.")
    assert get_action(web_server, agent, second["id"])["params"]["memo"] == HOSTILE


def test_an_edit_is_approved_only_as_reviewed(page: Page, web_server: ServerProcess) -> None:
    agent = web_server.create_key("agent")
    action = submit(web_server, agent, params={"amount": 900})
    login(page, web_server, web_server.create_key("approver"))
    page.goto(web_server.url + f"/actions/{action['id']}")
    page.get_by_text("Edit the arguments").click()
    page.locator("#edit-fields-form").get_by_label("amount").fill("400")
    page.locator("#edit-fields-form").get_by_role("button", name="Review changes").click()
    # The arguments posted are not the ones reviewed (a tampered form): refused.
    page.locator('#approve-edited-form input[name="params_json"]').evaluate(
        "el => el.value = JSON.stringify({amount: 4000})"
    )
    page.get_by_role("button", name="Approve these arguments").click()
    expect(page.locator("#flash")).to_contain_text("not the arguments you reviewed")
    assert get_action(web_server, agent, action["id"])["status"] == "pending_approval"
    # The policy still judges the edit: arguments it denies are refused.
    page.get_by_text("Edit the arguments").click()
    page.get_by_label("Params as JSON").fill('{"amount": "lots"}')
    page.locator("#edit-json-form").get_by_role("button", name="Review changes").click()
    page.get_by_role("button", name="Approve these arguments").click()
    expect(page.locator("#flash")).to_contain_text("Not approved")
    assert get_action(web_server, agent, action["id"])["status"] == "pending_approval"


def test_bulk_decisions_refuse_and_report_a_row_changed_meanwhile(page: Page, start_server: Any) -> None:
    from tests.web.conftest import WEB_POLICY

    server: ServerProcess = start_server(policy=WEB_POLICY)
    agent = server.create_key("agent")
    login(page, server, server.create_key("approver", name="bulk-bea"))
    dialogs = record_dialogs(page)
    plain = [submit(server, agent, params={"amount": 200 + i}) for i in range(3)]
    payout = submit(server, agent, tool="payout", operation="send", params={"amount": 9, "to": "acct-1"})
    page.reload()
    for action in [*plain, payout]:
        row_of(page, action).locator('input[name="pick"]').check()
    expect(page.locator("#bulk-count")).to_have_text("4 selected")
    # Someone edits the payout's arguments after the queue was loaded.
    editor = server.create_key("approver", name="ed")
    httpx.post(
        server.url + f"/v1/actions/{payout['id']}/approve",
        json={"params": {"amount": 9, "to": "acct-666"}},
        headers=auth(editor),
    ).raise_for_status()
    expect(row_of(page, payout).locator(".changed-note")).to_be_visible()
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Approve the 4 selected actions?")
    page.get_by_role("button", name="Yes, approve").click()
    expect(page.locator("#bulk-summary")).to_contain_text("3 decided, 1 not decided")
    changed = page.locator(f'#bulk-result tr[data-id="{payout["id"]}"]')
    expect(changed).to_have_attribute("data-result", "changed")
    expect(changed).to_contain_text("arguments changed")
    for action in plain:
        expect(page.locator(f'#bulk-result tr[data-id="{action["id"]}"]')).to_have_attribute("data-result", "approved")
        assert get_action(server, agent, action["id"])["status"] == "approved"
    after = get_action(server, agent, payout["id"])
    assert after["status"] == "pending_approval" and after["params"]["to"] == "acct-666"
    assert len(after["approvals"]) == 1 and after["approvals"][0]["approver"].endswith("(ed)")
    assert dialogs == []

    # Deny needs a reason, then denies what is selected.
    page.goto(server.url + "/")
    more = [submit(server, agent, params={"amount": 300 + i}) for i in range(2)]
    page.reload()
    for action in more:
        row_of(page, action).locator('input[name="pick"]').check()
    page.get_by_role("button", name="Deny selected").click()
    expect(page.get_by_label("Reason for the selected actions")).to_be_focused()
    page.get_by_label("Reason for the selected actions").fill("batch looks like a loop")
    page.get_by_role("button", name="Deny selected").click()
    page.get_by_role("button", name="Yes, deny").click()
    expect(page.locator("#bulk-summary")).to_contain_text("2 decided")
    for action in more:
        denied = get_action(server, agent, action["id"])
        assert denied["status"] == "denied" and denied["reason"] == "batch looks like a loop"


def test_a_grant_created_from_the_action_page(page: Page, start_server: Any) -> None:
    from tests.web.conftest import WEB_POLICY

    server: ServerProcess = start_server(policy=WEB_POLICY)
    agent = server.create_key("agent", agent_id="billing-bot")
    action = submit(server, agent, params={"amount": 150, "customer": "cus_1"})
    login(page, server, server.create_key("approver", name="gina"))
    page.goto(server.url + f"/actions/{action['id']}")
    page.get_by_text("Approve, and allow the same for").click()
    expect(page.locator("#grant-conditions")).to_have_text("amount ≤ 150")
    page.get_by_label("For").select_option("1h")
    page.get_by_label("At most this many times").fill("2")
    page.get_by_label("Why it is safe to allow").fill("month-end refunds")
    page.get_by_role("button", name="Approve and allow the same").click()
    expect(page.locator("#flash")).to_contain_text("Approved. Grant")
    expect(page.locator("#flash")).to_contain_text("amount ≤ 150")
    assert get_action(server, agent, action["id"])["status"] == "approved"

    # The same again (or smaller) is approved at once by the grant; larger is held.
    again = submit(server, agent, params={"amount": 120, "customer": "cus_2"})
    assert again["status"] == "approved" and again["decided_by"].startswith("grant:")
    assert submit(server, agent, params={"amount": 151, "customer": "cus_1"})["status"] == "pending_approval"

    page.get_by_role("link", name="Grants").click()
    row = page.locator("#grants tbody tr").first
    expect(row).to_contain_text("refund")
    expect(row).to_contain_text("billing-bot")
    expect(row).to_contain_text("1 of 2")
    expect(row).to_contain_text("month-end refunds")
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#flash")).to_contain_text("is revoked")
    assert submit(server, agent, params={"amount": 100.5})["status"] == "pending_approval"
    # Not offered where a grant could never apply (a rule needing two approvers).
    payout = submit(server, agent, tool="payout", operation="send", params={"amount": 1})
    page.goto(server.url + f"/actions/{payout['id']}")
    expect(page.locator("#grant-offer")).to_have_count(0)


def test_the_queue_and_action_page_work_on_a_phone(page: Page, web_server: ServerProcess) -> None:
    agent = web_server.create_key("agent")
    action = submit(web_server, agent, params={"amount": 512, "customer": "cus_phone"})
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, web_server, web_server.create_key("approver"))
    row = row_of(page, action)
    expect(row.locator(".args")).to_contain_text("amount 512")
    box = row.bounding_box()
    assert box is not None and box["width"] <= 390
    # Touch targets big enough, nothing sideways.
    assert page.get_by_role("button", name="Approve selected").bounding_box()["height"] >= 40
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    row.get_by_role("link").click()
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("#flash")).to_contain_text("Approved.")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
