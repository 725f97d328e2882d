"""Outgoing webhooks against a real local HTTP receiver: signatures, retries with
backoff, the delivery log, the admin API, and a decision path that never waits for a
receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from faramesh.notify.deliveries import list_deliveries as deliveries_log
from faramesh.notify.webhooks import signature_header, verify_signature
from faramesh.sdk.client import ExecutionGovernorClient
from tests.approvals.support import POLICY, Receiver, Server, decide, eventually, get, receiving, submit
from tests.conftest import auth, faramesh_cmd, fresh_database
from tests.inprocess import BASE_URL, InProcessServer, inprocess_server

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SECRET = "whsec_test_0123456789"
FAST_RETRY = 0.2  # seconds before the first retry


def hooks_file(tmp_path: Path, *hooks: dict[str, Any]) -> Path:
    path = tmp_path / "webhooks.yaml"
    path.write_text(json.dumps({"webhooks": list(hooks)}))  # JSON is YAML too
    return path


def deliveries(server: Server, hook_id: str) -> list[dict[str, Any]]:
    r = server.get(f"/v1/webhooks/{hook_id}/deliveries", headers=auth(server.admin_key or ""), timeout=10)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["deliveries"]
    return rows


def only_hook(server: Server) -> dict[str, Any]:
    r = server.get("/v1/webhooks", headers=auth(server.admin_key or ""), timeout=10)
    [hook] = r.json()["webhooks"]
    return dict(hook)


def test_signed_delivery_is_retried_after_the_receiver_fails_once(make_client: Any, tmp_path: Path) -> None:
    with receiving(statuses=[500]) as receiver:
        config = hooks_file(tmp_path, {"url": receiver.url, "secret": SECRET, "events": ["action.created"]})
        server: InProcessServer = make_client(policy=POLICY, webhooks=str(config), webhook_retry_base=FAST_RETRY)
        agent = server.create_key("agent")
        action = submit(server, agent, "refund", "process", amount=500, customer_id="c-9")

        eventually(lambda: len(receiver.of_type("action.created")) >= 2)
        first, second = receiver.of_type("action.created")[:2]
        for attempt in (first, second):
            header = attempt.headers["X-Faramesh-Signature"]
            assert verify_signature(SECRET, header, attempt.body)
            assert not verify_signature("another secret", header, attempt.body)
            assert not verify_signature(SECRET, header, attempt.body.replace(b"500", b"5"))
            assert attempt.headers["Content-Type"] == "application/json"
        assert first.body == second.body  # a retry sends the same event
        assert first.headers["X-Faramesh-Delivery"] == second.headers["X-Faramesh-Delivery"]
        event = second.json()
        assert event["type"] == "action.created" and event["action_id"] == action["id"]
        assert event["status"] == "pending_approval"
        assert event["action"]["params"] == {"amount": 500, "customer_id": "c-9"}
        assert "approval_token" not in event["action"]
        assert event["id"] == str(event["seq"])

        hook = only_hook(server)
        assert hook["source"] == "file" and hook["read_only"] and "secret" not in hook
        log = eventually(lambda: [d for d in deliveries(server, hook["id"]) if d["status"] == "delivered"])
        assert log[0]["attempts"] == 2 and log[0]["last_status"] == 200 and log[0]["event"] == "action.created"
        # Events the webhook did not ask for are not sent: the allowed small refund is
        # an action.created too, but approvals are not.
        approver = server.create_key("approver")
        assert decide(server, approver, action["id"]).status_code == 200
        small = submit(server, agent, "refund", "process", amount=5)
        eventually(lambda: any(r.json()["action_id"] == small["id"] for r in receiver.of_type("action.created")))
        assert receiver.of_type("action.approved") == []


def test_failing_receiver_is_retried_with_growing_backoff_and_logged(make_client: Any, tmp_path: Path) -> None:
    with receiving(statuses=[503] * 50) as receiver:
        config = hooks_file(tmp_path, {"url": receiver.url, "secret": SECRET, "events": ["*"]})
        server: InProcessServer = make_client(policy=POLICY, webhooks=str(config), webhook_retry_base=FAST_RETRY)
        submit(server, server.create_key("agent"), "refund", "process", amount=5)
        hook = only_hook(server)
        eventually(lambda: len(receiver.requests) >= 3)
        [row] = deliveries(server, hook["id"])
        assert row["status"] == "pending" and row["attempts"] >= 2
        assert row["last_status"] == 503 and "503" in row["last_error"]
        # Backoff: each retry waits at least its growing delay (0.2 s, then 0.4 s). Lower
        # bounds only: a busy machine makes the gaps longer, never shorter.
        times = [r.at for r in receiver.requests[:3]]
        assert times[1] - times[0] >= FAST_RETRY * 0.95
        assert times[2] - times[1] >= 2 * FAST_RETRY * 0.95


def test_admin_api_adds_lists_and_removes_webhooks(make_client: Any, tmp_path: Path) -> None:
    with receiving() as file_receiver, receiving() as api_receiver:
        config = hooks_file(tmp_path, {"url": file_receiver.url, "secret": SECRET, "events": ["action.denied"]})
        server: InProcessServer = make_client(policy=POLICY, webhooks=str(config))
        admin = auth(server.admin_key or "")
        r = server.post(
            "/v1/webhooks",
            json={"url": api_receiver.url, "events": ["action.approved"], "description": "ops channel"},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        created = r.json()
        secret = created["secret"]
        assert secret.startswith("whsec_") and created["source"] == "api" and not created["read_only"]

        listed = server.get("/v1/webhooks", headers=admin).json()["webhooks"]
        assert {h["source"] for h in listed} == {"file", "api"}
        assert all("secret" not in h for h in listed)
        file_hook = next(h for h in listed if h["source"] == "file")

        agent, approver = server.create_key("agent"), server.create_key("approver")
        action = submit(server, agent, "refund", "process", amount=300)
        assert decide(server, approver, action["id"], reason="fine").status_code == 200
        [got] = eventually(lambda: api_receiver.of_type("action.approved"))
        assert verify_signature(secret, got.headers["X-Faramesh-Signature"], got.body)
        assert got.json()["action"]["decision_reason"] == "fine"
        assert api_receiver.of_type("action.created") == []  # not subscribed

        # File webhooks are read-only; stored ones can be removed, and then receive nothing.
        r = server.delete(f"/v1/webhooks/{file_hook['id']}", headers=admin)
        assert r.status_code == 403 and r.json()["error"]["code"] == "read_only"
        assert server.delete(f"/v1/webhooks/{created['id']}", headers=admin).status_code == 200
        assert server.delete(f"/v1/webhooks/{created['id']}", headers=admin).status_code == 404
        assert [h["id"] for h in server.get("/v1/webhooks", headers=admin).json()["webhooks"]] == [file_hook["id"]]
        later = submit(server, agent, "refund", "process", amount=301)
        assert decide(server, approver, later["id"]).status_code == 200
        denied = submit(server, agent, "refund", "process", amount=302)
        assert decide(server, approver, denied["id"], "deny", reason="no").status_code == 200
        eventually(lambda: file_receiver.of_type("action.denied"))
        assert len(api_receiver.of_type("action.approved")) == 1

        # Changes to webhooks are in the audit log.
        exported = subprocess.run(
            faramesh_cmd("audit", "export", "--database-url", server.database_url),
            capture_output=True,
            text=True,
            check=True,
        )
        records = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
        changes = [(r["event"], r["data"]["webhook_id"]) for r in records if r["event"].startswith("webhook.")]
        assert changes == [("webhook.created", created["id"]), ("webhook.deleted", created["id"])]
        assert all(secret not in line for line in exported.stdout.splitlines())


def test_webhook_api_refuses_bad_input_and_non_admins(client: InProcessServer) -> None:
    admin = auth(client.admin_key or "")
    cases = [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://example.com/x", "events": ["action.exploded"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "format": "xml"}, "format"),
        ({"url": "https://example.com/x", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        r = client.post("/v1/webhooks", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field and r.json()["detail"]
    approver = auth(client.create_key("approver"))
    assert client.get("/v1/webhooks", headers=approver).status_code == 403
    assert client.post("/v1/webhooks", json={"url": "https://e.com"}, headers=approver).status_code == 403
    assert client.get("/v1/webhooks/nope/deliveries", headers=admin).status_code == 404


def test_decisions_and_wake_ups_do_not_wait_for_a_hanging_receiver(make_client: Any, tmp_path: Path) -> None:
    receiver = Receiver().start(hang=True)
    try:
        config = hooks_file(tmp_path, {"url": receiver.url, "secret": SECRET, "events": ["*"]})
        server: InProcessServer = make_client(policy=POLICY, webhooks=str(config), webhook_timeout=60.0)
        agent = ExecutionGovernorClient(BASE_URL, server.create_key("agent"), timeout=5, transport=server.transport)
        approver = server.create_key("approver")
        results: list[dict[str, Any]] = []
        for i in range(3):
            action = agent.submit_action("refund", "process", {"amount": 400 + i})
            eventually(lambda: receiver.hanging >= 1)  # the receiver holds a delivery open
            waiter = threading.Thread(target=lambda a=action: results.append(agent.wait_for_decision(a["id"], 30)))
            waiter.start()
            time.sleep(0.2)
            # Both calls have a 5 s budget while the receiver hangs for up to 60 s.
            r = decide(server, approver, action["id"], reason="go", timeout=5)
            assert r.status_code == 200 and r.json()["status"] == "approved"
            waiter.join(10)
            assert not waiter.is_alive()
        assert [a["status"] for a in results] == ["approved"] * 3
        assert receiver.hanging >= 1 and not receiver.release.is_set()
        # Once it answers again, everything queued meanwhile is delivered.
        receiver.release.set()
        eventually(lambda: len(receiver.of_type("action.approved")) == 3, timeout=30)
    finally:
        receiver.stop()


def test_signature_helper_follows_the_documented_scheme() -> None:
    body = b'{"type":"action.created"}'
    now = 1_700_000_000
    header = signature_header("k", body, timestamp=now)
    expected = hmac.new(b"k", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={now},v1={expected}"
    assert verify_signature("k", header, body, now=now + 299)
    assert not verify_signature("k", header, body, now=now + 301)  # replayed too late
    assert not verify_signature("k", header, body, now=now - 301)
    assert not verify_signature("k", "t=abc,v1=00", body, now=now)
    assert not verify_signature("k", None, body, now=now)
    assert verify_signature("k", f"t={now},v1=deadbeef,v1={expected}", body, now=now)  # rotated secrets


def test_broken_webhooks_file_stops_the_server_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "hooks.yaml"
    bad.write_text("- url: https://example.com/x\n  events: [action.exploded]\n  secret: s\n")
    out = subprocess.run(
        faramesh_cmd("serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--webhooks", str(bad)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "webhooks" in out.stderr and "action.exploded" in out.stderr


def test_pending_approval_filter_selects_only_held_actions(client: InProcessServer) -> None:
    with receiving() as receiver:
        admin = auth(client.admin_key or "")
        r = client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "secret": SECRET, "events": ["action.pending_approval"]},
            headers=admin,
        )
        assert r.status_code == 201
        agent = client.create_key("agent")
        allowed = submit(client, agent, "refund", "process", amount=3)
        held = submit(client, agent, "refund", "process", amount=3000)
        allowed_later = submit(client, agent, "refund", "process", amount=4)
        held_later = submit(client, agent, "refund", "process", amount=3001)
        # Deliveries follow the event order, so once the last held action has arrived
        # any delivery for the allowed ones would have arrived before it.
        eventually(lambda: len(receiver.of_type("action.created")) >= 2)
        assert [x.json()["action_id"] for x in receiver.requests] == [held["id"], held_later["id"]]
        assert get(client, agent, allowed_later["id"])["status"] == "allowed"
        assert get(client, agent, allowed["id"])["status"] == "allowed"
        client.delete(f"/v1/webhooks/{r.json()['id']}", headers=admin)


def test_dispatcher_gives_up_after_its_attempts(tmp_path: Path) -> None:
    """The dispatcher on its own, with a real SQLite store and a real receiver that always fails."""
    from faramesh.events import ChangeEvent, EventHub
    from faramesh.notify.dispatcher import WebhookDispatcher
    from faramesh.notify.webhooks import Webhook
    from faramesh.storage import Store

    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.upgrade()
    with receiving(statuses=[500] * 10) as receiver:
        hook = Webhook(id="file-test", url=receiver.url, secret=SECRET, events=("*",), source="file")

        async def run() -> list[dict[str, Any]]:
            hub = EventHub()
            dispatcher = WebhookDispatcher(store, hub, [hook], retry_base=0.05, max_attempts=3, timeout=5)
            await dispatcher.start()
            try:
                hub.publish(ChangeEvent(seq=1, type="action.created", action_id="a1", action={"status": "allowed"}))
                for _ in range(400):
                    rows = store.read(lambda conn: deliveries_log(conn, "file-test"))
                    if rows and rows[0]["status"] == "failed":
                        return rows
                    await asyncio.sleep(0.05)
                raise AssertionError(f"the delivery was not given up: {rows}")
            finally:
                await dispatcher.stop()

        [row] = asyncio.run(run())
        assert row["attempts"] == 3 and row["last_status"] == 500 and row["next_attempt_at"] is None
        assert len(receiver.requests) == 3
    store.close()


def test_pending_deliveries_survive_a_restart(backend: str, tmp_path: Path) -> None:
    with receiving(statuses=[500] * 100) as receiver, fresh_database(backend, tmp_path) as url:
        config = hooks_file(tmp_path, {"url": receiver.url, "secret": SECRET, "events": ["action.created"]})
        settings: dict[str, Any] = {"webhooks": str(config), "webhook_retry_base": 3.0}
        with inprocess_server(url, policy=POLICY, **settings) as first:
            action = submit(first, first.create_key("agent"), "refund", "process", amount=5)
            # Stop only once the failed attempt is recorded: an attempt still in flight when
            # the app stops keeps its lease (timeout + 30 s), and the retry waits that out.
            first_hook = only_hook(first)["id"]
            eventually(lambda: [d for d in deliveries(first, first_hook) if d["last_status"] == 500])
            assert len(receiver.requests) == 1
        # The retry was due 3 s later, after this app stopped; the receiver recovers meanwhile.
        with receiver._lock:
            receiver.statuses.clear()
        with inprocess_server(url, policy=POLICY, **settings) as second:
            hook = only_hook(second)
            [row] = eventually(lambda: [d for d in deliveries(second, hook["id"]) if d["status"] == "delivered"])
        assert row["attempts"] == 2 and row["action_id"] == action["id"]
        assert len({r.headers["X-Faramesh-Delivery"] for r in receiver.requests}) == 1
        assert len(receiver.requests) == 2


def test_dispatcher_stops_when_woken_at_the_moment_it_is_stopped(tmp_path: Path) -> None:
    """A delivery finishing (it wakes the send loop) or a webhook added (it wakes the queue
    loop) in the same instant as `stop()` must not keep either loop running: on Python 3.11
    `asyncio.wait_for` swallows such a cancel, and a server's shutdown then hung."""
    from faramesh.events import EventHub
    from faramesh.notify.dispatcher import WebhookDispatcher
    from faramesh.storage import Store

    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.upgrade()

    async def run() -> None:
        dispatcher = WebhookDispatcher(store, EventHub(), [], retry_base=0.05)
        await dispatcher.start()
        await asyncio.sleep(0.2)  # both loops are waiting: the queue on `_changed`, the send on `_wake`
        dispatcher.invalidate()
        dispatcher._poke()
        await dispatcher.stop()

    ends_within(10, run)
    store.close()


def test_a_subscription_cancelled_as_an_event_arrives_ends() -> None:
    """The same race for a wait or stream: the event arriving with the cancel must not undo it."""
    from faramesh.events import ChangeEvent, EventHub

    async def run() -> None:
        hub = EventHub()
        sub = hub.subscribe(None)
        waiting = asyncio.create_task(sub.get(timeout=30))
        await asyncio.sleep(0.05)
        hub.publish(ChangeEvent(seq=1, type="action.created", action_id="a1", action={"status": "allowed"}))
        await asyncio.sleep(0)  # the event is in the queue; the getter wakes in the next step
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        sub.close()

    ends_within(10, run)


def ends_within(seconds: float, main: Any) -> None:
    """Run the coroutine function `main` on its own loop; fail (not hang) if it does not end."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            asyncio.run(main())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds:g}s: a cancel was swallowed"
    if outcome[0] is not None:
        raise outcome[0]
