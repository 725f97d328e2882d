"""The dashboard below the browser: sessions, CSRF, headers, filters and admin pages,
checked over HTTP against the real server."""

from __future__ import annotations

import json
import re
import time
from html import unescape
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, auth
from tests.web.conftest import WEB_POLICY, csrf_of, get_action, http_login, submit

PAGES = ("/", "/history", "/policy", "/admin/keys", "/admin/webhooks")


class InlineCodeFinder(HTMLParser):
    """Collects anything a strict CSP would have to block: inline scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        for name in names:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"{name}= on <{tag}>")


def inline_code(html: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(html)
    return finder.problems


@pytest.fixture(scope="module")
def admin(web_server: ServerProcess) -> httpx.Client:
    assert web_server.admin_key
    return http_login(web_server, web_server.admin_key)


def test_no_page_is_shown_without_a_session(web_server: ServerProcess) -> None:
    action = submit(web_server, web_server.create_key("agent"))
    with httpx.Client(base_url=web_server.url, follow_redirects=False) as anon:
        for path in (*PAGES, f"/actions/{action['id']}"):
            r = anon.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login"), path
            assert action["id"] not in r.text
        assert anon.get("/history?status=denied").headers["location"] == "/login?next=%2Fhistory%3Fstatus%3Ddenied"
        assert anon.get("/ui/events").status_code == 401
        page = anon.get("/login")
        # A valid CSRF token is not a session: posts still need a login.
        r = anon.post(f"/actions/{action['id']}/decide", data={"decision": "approve", "csrf_token": csrf_of(page.text)})
        assert r.status_code == 403
    assert get_action(web_server, web_server.admin_key or "", action["id"])["status"] == "pending_approval"


def test_pages_carry_a_strict_csp_and_no_inline_code(web_server: ServerProcess, admin: httpx.Client) -> None:
    action = submit(web_server, web_server.create_key("agent"))
    anonymous_login = httpx.get(web_server.url + "/login")
    for path in (*PAGES, f"/actions/{action['id']}", "/login"):
        r = admin.get(path) if path != "/login" else anonymous_login
        assert r.status_code == 200, (path, r.text[:500])
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["cache-control"] == "no-store"
        assert inline_code(r.text) == [], path
    # The API keeps its own, stricter policy.
    assert httpx.get(web_server.url + "/health").headers["content-security-policy"].startswith("default-src 'none'")


def test_session_cookie_is_httponly_strict_signed_and_expires(web_server: ServerProcess) -> None:
    key = web_server.create_key("approver")
    with httpx.Client(base_url=web_server.url, follow_redirects=False) as client:
        form = client.get("/login")
        r = client.post("/login", data={"key": key, "csrf_token": csrf_of(form.text), "next": "/history"})
        assert r.status_code == 303 and r.headers["location"] == "/history"
        header = r.headers["set-cookie"]
        assert header.startswith("faramesh_session=")
        assert "HttpOnly" in header
        assert "SameSite=strict" in header
        max_age = int(re.search(r"Max-Age=(\d+)", header).group(1))  # type: ignore[union-attr]
        assert 8 * 3600 - 60 < max_age <= 8 * 3600
        assert key not in header  # only the key id travels, never the key
        value = client.cookies["faramesh_session"]
        assert client.get("/history").status_code == 200
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    r = httpx.get(web_server.url + "/history", cookies={"faramesh_session": tampered}, follow_redirects=False)
    assert r.status_code == 303


def test_login_form_needs_its_csrf_token(web_server: ServerProcess) -> None:
    key = web_server.create_key("approver")
    with httpx.Client(base_url=web_server.url, follow_redirects=False) as client:
        client.get("/login")
        r = client.post("/login", data={"key": key})
        assert r.status_code == 403
        assert client.get("/").status_code == 303


def test_only_approver_and_admin_keys_log_in(web_server: ServerProcess) -> None:
    for role, status in (("agent", 403), ("approver", 303), ("admin", 303)):
        with httpx.Client(base_url=web_server.url, follow_redirects=False) as client:
            form = client.get("/login")
            key = web_server.create_key(role)
            r = client.post("/login", data={"key": key, "csrf_token": csrf_of(form.text)})
            assert r.status_code == status, role
            assert (client.get("/").status_code == 200) is (status == 303)
    with httpx.Client(base_url=web_server.url, follow_redirects=False) as client:
        form = client.get("/login")
        r = client.post("/login", data={"key": "fm_wrong", "csrf_token": csrf_of(form.text)})
        assert r.status_code == 401
        assert "not valid" in r.text


def test_login_redirect_stays_on_this_site(web_server: ServerProcess) -> None:
    key = web_server.create_key("approver")
    for nxt, expected in (("//evil.example/x", "/"), ("https://evil.example", "/"), ("/policy", "/policy")):
        with httpx.Client(base_url=web_server.url, follow_redirects=False) as client:
            form = client.get("/login")
            r = client.post("/login", data={"key": key, "csrf_token": csrf_of(form.text), "next": nxt})
            assert r.headers["location"] == expected


def test_revoking_the_key_ends_its_session(web_server: ServerProcess) -> None:
    key = web_server.create_key("approver", name="leaver")
    client = http_login(web_server, key)
    assert client.get("/").status_code == 200
    key_id = next(
        k["id"]
        for k in httpx.get(web_server.url + "/v1/keys", headers=auth(web_server.admin_key or "")).json()["keys"]
        if k["name"] == "leaver"
    )
    httpx.delete(web_server.url + f"/v1/keys/{key_id}", headers=auth(web_server.admin_key or "")).raise_for_status()
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "revoked" in client.get("/login").text


def test_deny_without_a_reason_is_refused_by_the_server(web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key)
    client = http_login(web_server, web_server.create_key("approver"))
    page = client.get(f"/actions/{action['id']}")
    r = client.post(
        f"/actions/{action['id']}/decide", data={"decision": "deny", "reason": "   ", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303
    assert "A reason is required to deny" in client.get(f"/actions/{action['id']}").text
    assert get_action(web_server, agent_key, action["id"])["status"] == "pending_approval"


def test_a_conflict_is_a_message_on_the_page(web_server: ServerProcess) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key)
    client = http_login(web_server, web_server.create_key("approver"))
    form = client.get(f"/actions/{action['id']}").text
    token, shown = csrf_of(form), shown_hash(form)
    winner = web_server.create_key("approver", name="dana")
    httpx.post(
        web_server.url + f"/v1/actions/{action['id']}/deny", json={"reason": "no"}, headers=auth(winner)
    ).raise_for_status()
    r = client.post(
        f"/actions/{action['id']}/decide", data={"decision": "approve", "csrf_token": token, "request_hash": shown}
    )
    assert r.status_code == 303
    page = client.get(f"/actions/{action['id']}")
    assert page.status_code == 200
    assert re.search(r"Already denied by key:\w+ \(dana\)\.", page.text)


SHOWN_HASH_RE = re.compile(r'name="request_hash" id="shown-hash" value="([0-9a-f]{64})"')


def shown_hash(html: str) -> str:
    """The request hash the page's decision form is bound to."""
    match = SHOWN_HASH_RE.search(html)
    assert match, "the decision form carries no request hash"
    return match.group(1)


def pre(html: str, element_id: str) -> Any:
    """The JSON shown in <pre id=element_id>."""
    match = re.search(rf'<pre class="json" id="{element_id}"[^>]*>(.*?)</pre>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return json.loads(unescape(match.group(1)))


def test_a_vote_on_arguments_that_changed_meanwhile_is_refused(web_server: ServerProcess) -> None:
    """B opens the page, A approves with edited params, B presses Approve (or Deny) on the old page."""
    admin_key = web_server.admin_key or ""
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key, tool="payout", operation="send", params={"amount": 10, "to": "acct-1"})
    bea = http_login(web_server, web_server.create_key("approver", name="bea"))
    page = bea.get(f"/actions/{action['id']}").text
    token, seen = csrf_of(page), action["request_hash"]  # the arguments the page shows

    ann = web_server.create_key("approver", name="ann")
    edited = httpx.post(
        web_server.url + f"/v1/actions/{action['id']}/approve",
        json={"reason": "pay the right account", "params": {"amount": 10, "to": "acct-2"}},
        headers=auth(ann),
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "pending_approval" and edited.json()["request_hash"] != seen

    for decision in ("approve", "deny"):
        r = bea.post(
            f"/actions/{action['id']}/decide",
            data={"decision": decision, "reason": "stale", "csrf_token": token, "request_hash": seen},
        )
        assert r.status_code == 303
        assert get_action(web_server, admin_key, action["id"])["status"] == "pending_approval", decision
        assert r.headers["location"] == f"/actions/{action['id']}?seen={seen}"
        shown = bea.get(r.headers["location"]).text
        assert "The arguments of this action changed since you opened this page" in shown
        assert "was not recorded" in shown
        # What Bea saw beside what the action has now.
        assert pre(shown, "params-seen") == {"amount": 10, "to": "acct-1"}
        assert pre(shown, "params-now") == {"amount": 10, "to": "acct-2"}
        # The refreshed form is bound to the new arguments.
        assert shown_hash(shown) == edited.json()["request_hash"]

    assert shown_hash(page) == seen
    # A form without the hash decides nothing either.
    r = bea.post(f"/actions/{action['id']}/decide", data={"decision": "approve", "csrf_token": token})
    assert "This form is out of date" in bea.get(r.headers["location"]).text

    after = get_action(web_server, admin_key, action["id"])
    assert after["status"] == "pending_approval"
    assert after["params"] == {"amount": 10, "to": "acct-2"}
    assert [v["approver"].endswith("(ann)") for v in after["approvals"]] == [True]
    assert after["approval"]["counted"] == 1


def test_the_quorum_count_is_one_number_everywhere(web_server: ServerProcess) -> None:
    """After a vote on edited arguments, earlier votes stop counting in every view."""
    admin_key = web_server.admin_key or ""
    client = http_login(web_server, web_server.create_key("approver", name="viewer"))
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key, tool="payout", operation="send", params={"amount": 20, "to": "acct-1"})
    url = f"/v1/actions/{action['id']}/approve"
    with client.stream("GET", f"/ui/events?action={action['id']}", timeout=10) as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line == ": connected":
                break
        first = web_server.create_key("approver", name="cy")
        httpx.post(web_server.url + url, json={}, headers=auth(first)).raise_for_status()
        editor = web_server.create_key("approver", name="ed")
        body = {"params": {"amount": 20, "to": "acct-9"}}
        httpx.post(web_server.url + url, json=body, headers=auth(editor)).raise_for_status()
        feed = []
        for line in lines:
            if line.startswith("data: "):
                feed.append(json.loads(line[6:]))
            if len(feed) == 2:
                break

    page = client.get(f"/actions/{action['id']}").text
    assert re.search(r'<span id="quorum-given">1</span> of 2 needed', page)
    queue = client.get("/").text
    row = re.search(rf'<tr data-id="{action["id"]}"[^>]*>(.*?)</tr>', queue, re.S)
    assert row and re.search(r">1 of 2 approvals<", row.group(1))
    api = get_action(web_server, admin_key, action["id"])
    assert api["status"] == "pending_approval"
    assert api["approval"]["counted"] == 1
    assert sum(v["counts"] for v in api["approvals"]) == 1 and len(api["approvals"]) == 2
    listed = httpx.get(
        web_server.url + "/v1/actions", params={"status": "pending_approval", "limit": 500}, headers=auth(admin_key)
    ).json()["actions"]
    assert [a["approval"]["counted"] for a in listed if a["id"] == action["id"]] == [1]

    # The live feed carries the same number with each change.
    assert [e["action"]["approval"]["counted"] for e in feed] == [1, 1]


def test_an_unknown_action_is_a_404_page(admin: httpx.Client) -> None:
    r = admin.get("/actions/no-such-action")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "no action with id" in r.text


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def test_history_filters_and_id_prefix_search(web_server: ServerProcess, admin: httpx.Client) -> None:
    agent_key = web_server.create_key("agent")
    tag = f"hist-{time.time_ns()}"
    allowed = submit(web_server, agent_key, params={"amount": 5}, context={"agent_id": tag})
    pending = submit(web_server, agent_key, params={"amount": 500}, context={"agent_id": tag})
    payout = submit(web_server, agent_key, tool="payout", operation="send", context={"agent_id": tag})
    denied = submit(web_server, agent_key, tool="shell", operation="exec", context={"agent_id": tag})
    everything = _rows(admin.get("/history", params={"agent": tag}).text)
    assert everything == [denied["id"], payout["id"], pending["id"], allowed["id"]]  # newest first
    assert _rows(admin.get("/history", params={"agent": tag, "status": "allowed"}).text) == [allowed["id"]]
    assert _rows(admin.get("/history", params={"agent": tag, "tool": "payout"}).text) == [payout["id"]]
    assert _rows(admin.get("/history", params={"agent": tag, "risk": "high"}).text) == [pending["id"]]
    assert _rows(admin.get("/history", params={"q": pending["id"][:13]}).text) == [pending["id"]]
    jump = admin.get("/history", params={"q": payout["id"]})
    assert jump.status_code == 303 and jump.headers["location"] == f"/actions/{payout['id']}"
    future = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3600))
    assert _rows(admin.get("/history", params={"agent": tag, "since": future}).text) == []
    assert len(_rows(admin.get("/history", params={"agent": tag, "until": future}).text)) == 4
    bad = admin.get("/history", params={"status": "bogus", "agent": tag})
    assert bad.status_code == 200 and "Unknown status" in bad.text
    assert "No actions match these filters." in admin.get("/history", params={"q": "zzzz"}).text


def test_history_pages_with_a_cursor(web_server: ServerProcess, admin: httpx.Client) -> None:
    agent_key = web_server.create_key("agent")
    tag = f"page-{time.time_ns()}"
    ids = [submit(web_server, agent_key, params={"amount": 1}, context={"agent_id": tag})["id"] for _ in range(57)]
    first = admin.get("/history", params={"agent": tag})
    page1 = _rows(first.text)
    assert page1 == ids[::-1][:50]
    older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert older
    second = admin.get(older.group(1).replace("&amp;", "&"))
    assert _rows(second.text) == ids[::-1][50:]
    assert 'rel="next"' not in second.text
    assert "« Newest" in second.text


def test_policy_page_shows_source_hash_and_warnings(web_server: ServerProcess, admin: httpx.Client) -> None:
    policy_hash = httpx.get(web_server.url + "/v1/policy", headers=auth(web_server.admin_key or "")).json()["hash"]
    r = admin.get("/policy")
    assert policy_hash in r.text
    assert str(WEB_POLICY) in r.text
    assert "sets no approval.timeout" in r.text  # the large-refunds rule's validation warning
    assert '<span class="nt">require_approval</span>' in r.text  # highlighted YAML
    assert "Payouts need two approvers" in r.text


def test_admin_pages_are_for_admins(web_server: ServerProcess) -> None:
    approver = http_login(web_server, web_server.create_key("approver"))
    assert approver.get("/admin/keys").status_code == 403
    assert approver.get("/admin/webhooks").status_code == 403
    token = csrf_of(approver.get("/").text)
    assert approver.post("/admin/keys", data={"role": "admin", "csrf_token": token}).status_code == 403
    assert 'href="/admin/keys"' not in approver.get("/").text


def test_admin_creates_a_key_shown_once_and_revokes_it(web_server: ServerProcess, admin: httpx.Client) -> None:
    token = csrf_of(admin.get("/admin/keys").text)
    r = admin.post("/admin/keys", data={"csrf_token": token, "role": "agent", "name": "new-bot", "agent_id": "new-bot"})
    assert r.status_code == 201
    secret = re.search(r'id="new-key-value" class="secret" readonly value="(fm_[^"]+)"', r.text)
    assert secret
    key = secret.group(1)
    assert key not in admin.get("/admin/keys").text  # shown once
    created = submit(web_server, key, params={"amount": 1})
    assert created["agent_id"] == "new-bot"

    key_id = re.search(r'<tr data-key="(\w+)">\s*<td data-label="Name">new-bot', admin.get("/admin/keys").text)
    assert key_id
    r = admin.post(f"/admin/keys/{key_id.group(1)}/revoke", data={"csrf_token": token})
    assert r.status_code == 303
    assert "no longer works" in admin.get("/admin/keys").text
    assert httpx.get(web_server.url + "/v1/actions", headers=auth(key)).status_code == 401

    me = re.search(r'<tr data-key="(\w+)">\s*<td data-label="Name">first admin', admin.get("/admin/keys").text)
    assert me
    admin.post(f"/admin/keys/{me.group(1)}/revoke", data={"csrf_token": token})
    assert "cannot revoke the key you are logged in with" in admin.get("/admin/keys").text
    assert admin.get("/").status_code == 200


def test_live_feed_replays_what_a_page_missed(web_server: ServerProcess) -> None:
    client = http_login(web_server, web_server.create_key("approver"))
    agent_key = web_server.create_key("agent")
    page = client.get("/")
    after = re.search(r'data-events="/ui/events\?after=(\d+)"', page.text)
    assert after
    action = submit(web_server, agent_key, params={"amount": 700, "secret_note": "params stay out of the feed"})
    seen: list[dict[str, Any]] = []
    with client.stream("GET", f"/ui/events?after={after.group(1)}", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
            if line == ": connected":
                break
    created = [e for e in seen if e["action_id"] == action["id"]]
    assert created and created[0]["type"] == "action.created"
    assert created[0]["action"]["status"] == "pending_approval"
    assert "params" not in created[0]["action"]  # the feed carries what the pages show, no more
    assert created[0]["entry"]["event"] == "action.submitted"


def test_secret_key_keeps_sessions_across_restarts(start_server: Any) -> None:
    def session_after_restart(env: dict[str, str]) -> int:
        first = start_server(policy=WEB_POLICY, env=env)
        key = first.create_key("approver")
        client = http_login(first, key)
        cookie = client.cookies["faramesh_session"]
        first.stop()
        second = ServerProcess(first.database_url, WEB_POLICY, env=env, cwd=first.cwd, port=first.port).start()
        try:
            r = httpx.get(second.url + "/", cookies={"faramesh_session": cookie}, follow_redirects=False)
            return r.status_code
        finally:
            second.stop()

    assert session_after_restart({"FARAMESH_SECRET_KEY": "a-long-random-secret-for-tests"}) == 200
    assert (
        session_after_restart({"FARAMESH_SECRET_KEY": ""}) == 303
    )  # a random secret per start: sessions end on restart


def test_webhooks_page_lists_webhooks_and_their_deliveries(start_server: Any) -> None:
    from sqlalchemy import create_engine

    from faramesh.storage.schema import webhook_deliveries, webhooks

    server: ServerProcess = start_server(policy=WEB_POLICY)
    admin = http_login(server, server.admin_key or "")
    assert "No webhooks are configured on this server." in admin.get("/admin/webhooks").text

    # A stored webhook (as the webhooks API would add it) and one failed delivery; it
    # only wants expiry events, so nothing in this test sends it anything.
    engine = create_engine(server.database_url)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            webhooks.insert().values(
                id="wh_test1",
                url="http://127.0.0.1:9/hook",
                secret="s3cret-not-shown",
                events='["action.expired"]',
                format="json",
                description="<b>ops</b> channel",
                created_by="key:admin",
                created_at=now,
            )
        )
        conn.execute(
            webhook_deliveries.insert().values(
                webhook_id="wh_test1",
                event="action.expired",
                event_seq=1,
                action_id=None,
                payload="{}",
                status="failed",
                attempts=10,
                last_status=502,
                last_error="bad gateway",
                next_attempt_at=now,
                created_at=now,
            )
        )
    engine.dispose()
    page = admin.get("/admin/webhooks").text
    assert "http://127.0.0.1:9/hook" in page
    assert "&lt;b&gt;ops&lt;/b&gt; channel" in page
    assert "failed (HTTP 502)" in page
    assert "bad gateway" in page
    assert "s3cret-not-shown" not in page


def test_a_malformed_form_is_an_html_error_not_a_crash(web_server: ServerProcess) -> None:
    client = http_login(web_server, web_server.create_key("approver"))
    parts = b"".join(b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(100))
    r = client.post(
        "/logout", content=parts + b"--x--\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "Too many fields" in r.text
    assert client.get("/").status_code == 200  # still logged in


def test_a_cancelled_action_leaves_the_queue_and_its_page_says_so(
    web_server: ServerProcess, admin: httpx.Client
) -> None:
    agent_key = web_server.create_key("agent")
    action = submit(web_server, agent_key, params={"amount": 777, "note": "cancel me"})
    page = admin.get(f"/actions/{action['id']}").text
    assert "The agent has not waited on it" in page
    assert action["id"] in admin.get("/").text

    r = httpx.post(
        web_server.url + f"/v1/actions/{action['id']}/cancel",
        json={"reason": "the user closed the chat"},
        headers=auth(agent_key),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert action["id"] not in admin.get("/").text
    page = unescape(admin.get(f"/actions/{action['id']}").text)
    assert 'class="status status-cancelled"' in page and "Cancelled" in page
    assert "the user closed the chat" in page
    assert 'id="decision-form"' not in page
    listed = unescape(admin.get("/history", params={"status": "cancelled"}).text)
    assert action["id"][:8] in listed
