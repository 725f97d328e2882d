"""People as the identity: sessions re-checked with the provider at most every N minutes
(group removed, account disabled, provider down), logout here and at the provider, key
login turned off, and the person in votes, separation of duties, policy groups, the
audit chain, webhooks and Slack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from faramesh import audit
from faramesh.errors import Forbidden
from faramesh.model import Identity, Person, Role, person_id
from faramesh.storage import people_repo
from tests.approvals.support import eventually, receiving, slack_request
from tests.conftest import auth
from tests.inprocess import InProcessServer
from tests.sso.conftest import SSO_POLICY, callback_path, csrf, sign_in, start_sign_in, web_client
from tests.sso.provider import Provider
from tests.sso.slack import SlackWithPeople


def submit(app: InProcessServer, tool: str, operation: str = "send", **params: Any) -> dict[str, Any]:
    key = app.create_key("agent", name="billing-bot")
    r = app.post(
        "/v1/actions", json={"tool": tool, "operation": operation, "params": params or {"amount": 5}}, headers=auth(key)
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending_approval"
    return dict(r.json())


def decide(client: httpx.Client, action: dict[str, Any], choice: str = "approve", reason: str = "") -> str:
    """Approve or deny on the action page; the message the page then shows."""
    path = f"/actions/{action['id']}"
    form = {"csrf_token": csrf(client, path), "decision": choice, "request_hash": action["request_hash"]}
    r = client.post(path + "/decide", data=form | ({"reason": reason} if reason else {}))
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    return page.text


def action_of(app: InProcessServer, action_id: str) -> dict[str, Any]:
    r = app.get(f"/v1/actions/{action_id}", headers=auth(app.admin_key))
    r.raise_for_status()
    return dict(r.json())


def records(app: InProcessServer, event: str | None = None) -> list[Any]:
    found = app.governor.store.read(lambda conn: audit.events_after(conn, 0, 10_000))
    return [r for r in found if event is None or r.event == event]


def on_queue(client: httpx.Client) -> bool:
    r = client.get("/")
    return r.status_code == 200


def login_flash(client: httpx.Client) -> str:
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/login"), r.text
    return client.get(r.headers["location"]).text


# -- sessions ---------------------------------------------------------------------------
def test_groups_are_rechecked_at_most_every_interval(sso_app: Any, provider: Provider) -> None:
    app = sso_app(oidc_recheck=300)
    client = sign_in(app, provider, "alice")
    tokens = provider.log.count(("POST", "/token"))
    for _ in range(3):
        assert on_queue(client)
    app.clock.advance(299)
    assert on_queue(client)
    assert provider.log.count(("POST", "/token")) == tokens  # not yet due: the provider is not asked
    app.clock.advance(2)
    assert on_queue(client)
    assert provider.log.count(("POST", "/token")) == tokens + 1  # one refresh
    assert on_queue(client)
    assert provider.log.count(("POST", "/token")) == tokens + 1


def test_person_removed_from_their_group_loses_every_session_at_the_next_recheck(
    sso_app: Any, provider: Provider
) -> None:
    app = sso_app(oidc_recheck=300)
    first, second = sign_in(app, provider, "alice"), sign_in(app, provider, "alice")
    action = submit(app, "refund", "process")
    provider.users["alice"].groups = ["finance"]  # no longer in faramesh-approvers
    assert on_queue(first)  # the groups as last checked still hold until the re-check is due
    app.clock.advance(301)
    text = login_flash(first)
    assert "Your session ended: not a member of any group that may use Faramesh." in text
    # Her other session ended with it, though its own re-check was not asked for.
    assert "Your session ended" in login_flash(second)
    (removed,) = records(app, "person.access_removed")
    assert removed.data["person"]["email"] == "alice@example.com" and removed.data["role"] == "approver"
    # And a vote from her, through any door, is refused.
    person = app.governor.store.read(lambda conn: people_repo.get_person(conn, person_id(provider.issuer, "u-alice")))
    assert person.role is None
    assert action_of(app, action["id"])["status"] == "pending_approval"
    # Signing in again is refused with the reason.
    again = web_client(app)
    r = again.get(callback_path(provider.authorize_url_answer(start_sign_in(again), "alice")))
    assert r.status_code == 403 and "No access to Faramesh" in r.text


def test_a_vote_in_flight_after_the_group_was_removed_is_refused(sso_app: Any, provider: Provider) -> None:
    app = sso_app(oidc_recheck=300)
    laptop, phone = sign_in(app, provider, "alice"), sign_in(app, provider, "alice")
    action = submit(app, "refund", "process")
    # The identity a request from her laptop was admitted with, before the provider dropped her.
    person = Person(issuer=provider.issuer, subject="u-alice", email="alice@example.com", name="Alice Example")
    admitted = Identity(key_id=person.id, role=Role.APPROVER, name=person.name, groups=("finance",), person=person)
    provider.users["alice"].groups = []
    app.clock.advance(301)
    assert "Your session ended" in login_flash(phone)  # the re-check on her phone removes her access
    with pytest.raises(Forbidden, match="groups no longer allow you to decide"):
        app.governor.approve(admitted, action["id"], expected_hash=action["request_hash"])
    assert action_of(app, action["id"])["status"] == "pending_approval"
    assert not on_queue(laptop)


def test_disabled_account_ends_the_session_at_the_next_recheck(sso_app: Any, provider: Provider) -> None:
    app = sso_app(oidc_recheck=60)
    client = sign_in(app, provider, "bob")
    provider.users["bob"].disabled = True
    app.clock.advance(61)
    assert "your identity provider no longer confirms this session" in login_flash(client)


def test_unreachable_provider_refuses_the_request_but_keeps_the_session(sso_app: Any, provider: Provider) -> None:
    app = sso_app(oidc_recheck=60)
    client = sign_in(app, provider, "bob")
    app.clock.advance(61)
    provider.fail_token_endpoint = 503
    r = client.get("/")
    assert r.status_code == 503
    assert "could not be re-checked with your identity provider" in r.text
    provider.fail_token_endpoint = None
    assert on_queue(client)  # tried again on the next request, and confirmed


def test_session_ends_after_its_lifetime(sso_app: Any, provider: Provider) -> None:
    app = sso_app(session_lifetime=3600, oidc_recheck=86400)
    client = sign_in(app, provider, "bob")
    app.clock.advance(3601)
    assert "Your session ended" in login_flash(client)


def test_logout_ends_the_session_and_offers_the_providers_end_session(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = sign_in(app, provider, "bob")
    cookie = dict(client.cookies)
    r = client.post("/logout", data={"csrf_token": csrf(client)})
    assert r.status_code == 200
    assert "You have signed out of Faramesh" in r.text
    link = r.text.split('id="provider-logout" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert link.startswith(provider.issuer + "/logout?id_token_hint=")
    assert "post_logout_redirect_uri=http%3A%2F%2Ftestserver%2Flogin" in link
    assert httpx.get(link, timeout=10).status_code == 200
    assert provider.logouts[-1]["client_id"] == provider.client_id
    # The old cookie is refused on any server process: the session row ended.
    replay = web_client(app)
    replay.cookies.update(cookie)
    assert not on_queue(replay)
    (out,) = records(app, "person.signed_out")
    assert out.data["person"]["subject"] == "u-bob"


def test_key_login_can_be_turned_off(sso_app: Any, provider: Provider) -> None:
    app = sso_app(dashboard_key_login=False)
    key = app.create_key("approver", name="automation")
    client = web_client(app)
    page = client.get("/login")
    assert 'name="key"' not in page.text and "Sign in with single sign-on" in page.text
    r = client.post("/login", data={"key": key, "next": "/"})
    assert r.status_code == 403 and "Key login to the dashboard is turned off" in r.text
    assert not on_queue(client)
    # Keys still work for the API (agents and automation).
    assert app.get("/v1/actions", headers=auth(key)).status_code == 200
    assert on_queue(sign_in(app, provider, "bob"))


def test_key_sessions_end_when_key_login_is_turned_off(make_client: Any, provider: Provider, tmp_path: Path) -> None:

    db = f"sqlite:///{tmp_path / 'shared.db'}"
    common = provider.settings(secret_key="s" * 40, database_url=db)
    common.pop("database_url")
    before = make_client(policy=SSO_POLICY, database_url=db, **common)
    key = before.create_key("approver")
    client = web_client(before)
    r = client.post("/login", data={"csrf_token": csrf_of_login(client), "key": key, "next": "/"})
    assert r.status_code == 303 and on_queue(client)
    after = make_client(policy=SSO_POLICY, database_url=db, dashboard_key_login=False, **common)
    moved = web_client(after)
    moved.cookies.update(dict(client.cookies))
    assert "Key login to the dashboard is turned off" in login_flash(moved)


def csrf_of_login(client: httpx.Client) -> str:
    page = client.get("/login")
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


# -- the person is the identity -----------------------------------------------------------
def test_two_sessions_of_one_person_are_one_approver(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    action = submit(app, "payout", amount=900)
    alice_laptop, alice_phone = sign_in(app, provider, "alice"), sign_in(app, provider, "alice")
    assert "1 of 2 needed" in decide(alice_laptop, action)
    assert "already decided on this action" in decide(alice_phone, action)
    assert action_of(app, action["id"])["status"] == "pending_approval"
    decide(sign_in(app, provider, "bob"), action)
    done = action_of(app, action["id"])
    assert done["status"] == "approved"
    assert done["decided_by"] == "person:bob@example.com (Bob Example)"
    votes = app.get(f"/v1/actions/{action['id']}", headers=auth(app.admin_key)).json()
    assert done["approval"]["counted"] == 2
    approvals = app.governor.get(app.governor.identity_for_key(admin_key_id(app)), action["id"])["approvals"]
    assert [v["person"]["email"] for v in approvals] == ["alice@example.com", "bob@example.com"]
    assert approvals[0]["person"] == {
        "issuer": provider.issuer,
        "subject": "u-alice",
        "email": "alice@example.com",
        "name": "Alice Example",
    }
    assert votes["decided_by"] == done["decided_by"]
    # The audit chain names the people: subject, email and issuer on each vote.
    votes_audited = [r for r in records(app) if r.action_id == action["id"] and r.event.startswith("action.approv")]
    assert [r.data["person"]["subject"] for r in votes_audited] == ["u-alice", "u-bob"]
    assert {r.data["person"]["issuer"] for r in votes_audited} == {provider.issuer}
    assert votes_audited[-1].actor == "person:bob@example.com (Bob Example)"


def admin_key_id(app: InProcessServer) -> str:
    identity = app.governor.authenticate(app.admin_key)
    assert identity is not None
    return identity.key_id


def test_policy_approver_groups_match_the_persons_groups(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    action = submit(app, "wire", amount=10_000)
    assert "only members of finance may decide this action" in decide(sign_in(app, provider, "bob"), action)
    assert action_of(app, action["id"])["status"] == "pending_approval"
    decide(sign_in(app, provider, "alice"), action)
    assert action_of(app, action["id"])["status"] == "approved"


def test_the_action_page_names_the_person_who_decided(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    action = submit(app, "refund", "process")
    client = sign_in(app, provider, "alice")
    decide(client, action, "deny", reason="Not this customer")
    page = client.get(f"/actions/{action['id']}").text
    assert "person:alice@example.com (Alice Example)" in page
    events = app.get(f"/v1/actions/{action['id']}/events", headers=auth(app.admin_key)).json()
    denied = next(e for e in events["events"] if e["event"] == "action.denied")
    assert denied["data"]["person"]["email"] == "alice@example.com"


def test_keys_made_by_a_person_name_them(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    carol = sign_in(app, provider, "carol")
    r = carol.post("/admin/keys", data={"csrf_token": csrf(carol, "/admin/keys"), "role": "agent", "name": "new-bot"})
    assert r.status_code == 201, r.text
    (created,) = [r for r in records(app, "key.created") if r.data["name"] == "new-bot"]
    assert created.actor == "person:carol@example.com (Carol Admin)"
    assert created.data["person"]["subject"] == "u-carol"


def test_webhooks_name_the_person_who_decided(sso_app: Any, provider: Provider, tmp_path: Path) -> None:
    with receiving() as receiver:
        hooks = tmp_path / "hooks.yaml"
        hooks.write_text(json.dumps([{"url": receiver.url, "secret": "s" * 20, "events": ["action.approved"]}]))
        app = sso_app(webhooks=str(hooks))
        action = submit(app, "refund", "process")
        decide(sign_in(app, provider, "alice"), action)
        (delivery,) = eventually(lambda: receiver.of_type("action.approved") or None)
        body = orjson.loads(delivery.body)
        assert body["action"]["decided_by"] == "person:alice@example.com (Alice Example)"
        assert body["details"]["person"]["email"] == "alice@example.com"
        assert body["details"]["person"]["issuer"] == provider.issuer


# -- Slack ------------------------------------------------------------------------------
SIGNING = "slack-signing-secret-for-sso"


@pytest.fixture
def slack() -> Any:
    fake = SlackWithPeople().start()
    try:
        yield fake
    finally:
        fake.stop()


def slack_app(sso_app: Any, slack: SlackWithPeople, tmp_path: Path) -> InProcessServer:
    config = tmp_path / "slack.json"
    config.write_text(
        json.dumps(
            {
                "signing_secret": SIGNING,
                "users": {"U0ALICEKEY": "0000000000000000"},
                "bot_token": "xoxb-test",
                "channel": "C0APPROVALS",
                "api_url": slack.url + "/api/",
            }
        )
    )
    return sso_app(slack_config=str(config))


def press(app: InProcessServer, user: str, action: dict[str, Any], approve: bool = True) -> dict[str, Any]:
    body, headers = slack_request(SIGNING, user, f"{action['id']}:{action['request_hash']}", approve=approve)
    r = app.post("/v1/integrations/slack/interactions", content=body, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_slack_presses_are_matched_to_people_by_confirmed_email(
    sso_app: Any, provider: Provider, slack: SlackWithPeople, tmp_path: Path
) -> None:
    slack.members = {
        "U0ALICE": {"email": "Alice@Example.com", "is_email_confirmed": True},
        "U0BOB": {"email": "bob@example.com", "is_email_confirmed": False},
        "U0STRANGER": {"email": "stranger@example.com", "is_email_confirmed": True},
    }
    app = slack_app(sso_app, slack, tmp_path)
    action = submit(app, "payout", amount=900)
    # Not a person yet: nobody with this email has signed in.
    answer = press(app, "U0ALICE", action)
    assert answer["error"]["code"] == "forbidden" and "no one with this verified email" in answer["text"]
    alice = sign_in(app, provider, "alice")
    assert "1 of 2" in press(app, "U0ALICE", action)["text"]
    # The same person in the dashboard is the same approver: no second vote.
    assert "already decided on this action" in decide(alice, action)
    approvals = app.governor.get(app.governor.identity_for_key(admin_key_id(app)), action["id"])["approvals"]
    assert [v["person"]["subject"] for v in approvals] == ["u-alice"]
    # An email Slack has not confirmed, or one no person has, decides nothing.
    sign_in(app, provider, "bob")
    assert "not confirmed" in press(app, "U0BOB", action)["text"]
    assert "no one with this verified email" in press(app, "U0STRANGER", action)["text"]
    assert action_of(app, action["id"])["status"] == "pending_approval"
    # The users: key map is not used with single sign-on (it would make Alice a second approver).
    assert press(app, "U0ALICEKEY", action)["error"]["code"] == "forbidden"


def test_slack_press_of_a_person_whose_access_was_removed_is_refused(
    sso_app: Any, provider: Provider, slack: SlackWithPeople, tmp_path: Path
) -> None:
    slack.members = {"U0ALICE": {"email": "alice@example.com", "is_email_confirmed": True}}
    app = slack_app(sso_app, slack, tmp_path)
    action = submit(app, "refund", "process")
    client = sign_in(app, provider, "alice")
    provider.users["alice"].groups = []
    app.clock.advance(301)
    login_flash(client)  # the re-check removes her access
    answer = press(app, "U0ALICE", action)
    assert "no group that may decide" in answer["text"]
    assert action_of(app, action["id"])["status"] == "pending_approval"


def test_slack_press_needs_a_recent_confirmation_by_the_provider(
    sso_app: Any, provider: Provider, slack: SlackWithPeople, tmp_path: Path
) -> None:
    slack.members = {"U0ALICE": {"email": "alice@example.com", "is_email_confirmed": True}}
    app = slack_app(sso_app, slack, tmp_path)
    sign_in(app, provider, "alice")
    app.clock.advance(25 * 3600)
    action = submit(app, "refund", "process")
    assert "has not signed in to the Faramesh dashboard for a day" in press(app, "U0ALICE", action)["text"]
    sign_in(app, provider, "alice")
    press(app, "U0ALICE", action)
    done = action_of(app, action["id"])
    assert done["status"] == "approved" and done["decided_by"] == "person:alice@example.com (Alice Example)"
