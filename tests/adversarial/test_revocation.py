"""Revoking a key reaches what the key already holds open: event streams, long-poll
waits and the dashboard's live feed close at once, on every replica, whoever revokes
(the API, the dashboard, the CLI writing the database directly).

Most tests run the real app under uvicorn in this process (so a test can see when a
wait has subscribed), on SQLite and on PostgreSQL; the replica tests add `faramesh
serve` processes on the same PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from faramesh.config import Settings
from faramesh.model import Role
from faramesh.policy import Policy
from faramesh.server.app import create_app
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.adversarial.support import assert_error
from tests.conftest import SEED_POLICY, ServerProcess, auth, faramesh_cmd, free_port, fresh_database, migrated_store
from tests.inprocess import IN_PROCESS_SECRET

pytestmark = pytest.mark.backends("sqlite", "postgresql")

CLOSE_DEADLINE = 5.0  # revocation ends what is open "at once": well within this
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@dataclass
class LiveServer:
    url: str
    database_url: str
    governor: Governor
    admin_key: str

    def new_key(self, role: str) -> tuple[str, str]:
        """(key id, secret) of a fresh key made through the admin API."""
        r = httpx.post(
            self.url + "/v1/keys", json={"role": role, "name": f"t-{role}"}, headers=auth(self.admin_key), timeout=10
        )
        assert r.status_code == 201, r.text
        return r.json()["id"], r.json()["key"]


@contextlib.contextmanager
def serve_in_process(database_url: str, key_recheck: float | None = None) -> Iterator[LiveServer]:
    store = Store(database_url)
    store.upgrade()
    _, admin = service_keys.create_key(store, role=Role.ADMIN, name="admin", actor="test")
    governor = Governor(store, Policy.from_file(SEED_POLICY), secret_key=IN_PROCESS_SECRET)
    if key_recheck is not None:
        governor.hub.key_recheck_interval = key_recheck
    app = create_app(Settings(database_url=database_url, policy=str(SEED_POLICY)), governor=governor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started, 20, "the app to start")
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", database_url, governor, admin)
    finally:
        server.should_exit = True
        thread.join(15)
        store.close()


@pytest.fixture
def live(backend: str, tmp_path: Path) -> Iterator[LiveServer]:
    with fresh_database(backend, tmp_path) as url, serve_in_process(url) as srv:
        yield srv


class Feed:
    """Reads a server-sent event stream in a thread: its data messages and when it ends."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.messages: list[dict[str, Any]] = []
        self.status: int | None = None
        self.connected = threading.Event()
        self.ended = threading.Event()
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()
        # ": connected" is sent after the server subscribed: from here on it is open.
        assert self.connected.wait(10), f"the stream did not connect (status {self.status})"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self.client.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as r:
                self.status = r.status_code
                self._socket = r.extensions["network_stream"].get_extra_info("socket")
                for line in r.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        with self._lock:
                            self.messages.append(orjson.loads(line[6:]))
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def action_ids(self) -> set[str]:
        with self._lock:
            return {m["action_id"] for m in self.messages if m.get("action_id")}

    def wait_for_action(self, action_id: str, timeout: float = 10.0) -> None:
        until(lambda: action_id in self.action_ids(), timeout, f"an event of {action_id}")

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)


@pytest.fixture
def feeds() -> Iterator[Callable[..., Feed]]:
    opened: list[Feed] = []
    clients: list[httpx.Client] = []

    def open_feed(
        base: str, key: str | None = None, *, client: httpx.Client | None = None, path: str = "/v1/events"
    ) -> Feed:
        if client is None:
            client = httpx.Client(base_url=base)
            clients.append(client)
        feed = Feed(client, path, auth(key) if key else None)
        opened.append(feed)
        return feed

    yield open_feed
    for feed in opened:
        feed.close()
    for client in clients:
        client.close()


def submit(url: str, key: str, amount: float = 500) -> dict[str, Any]:
    body = {"tool": "refund", "operation": "process", "params": {"amount": amount}, "reattach": False}
    r = httpx.post(url + "/v1/actions", json=body, headers=auth(key), timeout=10)
    assert r.status_code == 201, r.text
    return dict(r.json())


def revoke_by_api(url: str, admin_key: str, key_id: str) -> None:
    r = httpx.delete(f"{url}/v1/keys/{key_id}", headers=auth(admin_key), timeout=10)
    assert r.status_code == 200 and r.json()["revoked"] is True, r.text


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def dashboard_login(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=10)
    form = client.get("/login")
    r = client.post("/login", data={"key": key, "csrf_token": csrf_of(form.text), "next": "/"})
    assert r.status_code == 303, r.text
    return client


# -- /v1/events ----------------------------------------------------------------------
def test_event_stream_of_a_revoked_approver_closes_and_receives_nothing_later(
    live: LiveServer, feeds: Callable[..., Feed]
) -> None:
    approver_id, approver = live.new_key("approver")
    _, agent = live.new_key("agent")
    stream = feeds(live.url, approver)
    before = submit(live.url, agent)
    stream.wait_for_action(before["id"])  # the approver sees other agents' actions

    revoke_by_api(live.url, live.admin_key, approver_id)
    assert stream.ended.wait(CLOSE_DEADLINE), "the revoked key's event stream stayed open"
    after = submit(live.url, agent)
    assert after["id"] not in stream.action_ids()
    # Reconnecting is refused in the documented shape.
    assert_error(httpx.get(live.url + "/v1/events", headers=auth(approver), timeout=10), 401, "unauthorized")


def test_event_stream_of_another_key_stays_open(live: LiveServer, feeds: Callable[..., Feed]) -> None:
    revoked_id, revoked = live.new_key("approver")
    _, kept = live.new_key("approver")
    _, agent = live.new_key("agent")
    closing, staying = feeds(live.url, revoked), feeds(live.url, kept)
    revoke_by_api(live.url, live.admin_key, revoked_id)
    assert closing.ended.wait(CLOSE_DEADLINE)
    action = submit(live.url, agent)
    staying.wait_for_action(action["id"])
    assert not staying.ended.is_set()


# -- /v1/actions/{id}/wait -------------------------------------------------------------
def _wait_in_thread(url: str, key: str, action_id: str) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    answer: dict[str, httpx.Response] = {}

    def run() -> None:
        answer["r"] = httpx.get(
            f"{url}/v1/actions/{action_id}/wait", params={"timeout": 60}, headers=auth(key), timeout=90
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answer


def test_wait_in_progress_answers_401_when_its_key_is_revoked(live: LiveServer) -> None:
    agent_id, agent = live.new_key("agent")
    _, approver = live.new_key("approver")
    action = submit(live.url, agent)
    assert action["status"] == "pending_approval"
    thread, answer = _wait_in_thread(live.url, agent, action["id"])
    until(lambda: live.governor.hub.has_subscribers(action["id"]), 10, "the wait to start")

    revoke_by_api(live.url, live.admin_key, agent_id)
    thread.join(CLOSE_DEADLINE)
    assert not thread.is_alive(), "the revoked key's wait kept waiting"
    assert_error(answer["r"], 401, "unauthorized")
    # The action itself is untouched: it can still be decided.
    r = httpx.post(f"{live.url}/v1/actions/{action['id']}/approve", json={}, headers=auth(approver), timeout=10)
    assert r.status_code == 200, r.text


def test_wait_of_a_key_revoked_by_the_cli_ends_too(live: LiveServer, feeds: Callable[..., Feed]) -> None:
    """The CLI writes the database directly; on SQLite nothing is announced, so the
    server's periodic re-check of the keys holding waits and streams must find it."""
    agent_id, agent = live.new_key("agent")
    approver_id, approver = live.new_key("approver")
    action = submit(live.url, agent)
    stream = feeds(live.url, approver)
    thread, answer = _wait_in_thread(live.url, agent, action["id"])
    until(lambda: live.governor.hub.has_subscribers(action["id"]), 10, "the wait to start")

    for key_id in (agent_id, approver_id):
        done = subprocess.run(
            faramesh_cmd("keys", "revoke", key_id, "--database-url", live.database_url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    # The re-check runs every couple of seconds; allow for a slow CLI start as well.
    thread.join(10)
    assert not thread.is_alive(), "a wait of a key revoked by the CLI kept waiting"
    assert_error(answer["r"], 401, "unauthorized")
    assert stream.ended.wait(10), "an event stream of a key revoked by the CLI stayed open"


# -- the dashboard -------------------------------------------------------------------
def test_dashboard_live_feed_closes_when_its_key_is_revoked_from_the_dashboard(
    live: LiveServer, feeds: Callable[..., Feed]
) -> None:
    approver_id, approver = live.new_key("approver")
    _, agent = live.new_key("agent")
    session = dashboard_login(live.url, approver)
    admin = dashboard_login(live.url, live.admin_key)
    try:
        feed = feeds(live.url, client=session, path="/ui/events")
        before = submit(live.url, agent)
        feed.wait_for_action(before["id"])

        page = admin.get("/admin/keys")
        r = admin.post(f"/admin/keys/{approver_id}/revoke", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 303, r.text
        assert feed.ended.wait(CLOSE_DEADLINE), "the live feed of a revoked key stayed open"
        assert feed.messages[-1] == {"type": "logout"}
        after = submit(live.url, agent)
        assert after["id"] not in feed.action_ids()
        # The session cookie stops working on its next request too.
        r = session.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert session.get("/ui/events").status_code == 401
    finally:
        admin.close()
        session.close()


def test_dashboard_live_feed_closes_when_its_session_logs_out(live: LiveServer, feeds: Callable[..., Feed]) -> None:
    _, approver = live.new_key("approver")
    session = dashboard_login(live.url, approver)
    copy = httpx.Client(base_url=live.url, cookies=session.cookies, timeout=10)  # a copied cookie
    try:
        feed = feeds(live.url, client=copy, path="/ui/events")
        page = session.get("/")
        r = session.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 303, r.text
        assert feed.ended.wait(CLOSE_DEADLINE), "the live feed of a logged-out session stayed open"
        assert feed.messages[-1] == {"type": "logout"}
    finally:
        copy.close()
        session.close()


# -- the hub -----------------------------------------------------------------------------
def test_a_subscription_opened_after_the_revocation_is_already_ended() -> None:
    """A request authenticated just before the revocation must not subscribe after it."""
    from faramesh.errors import KeyRevoked
    from faramesh.events import EventHub

    async def scenario() -> None:
        hub = EventHub()
        held = hub.subscribe(None, key_id="k1")
        other = hub.subscribe(None, key_id="k2")
        server_own = hub.subscribe(None)
        assert hub.revoke("k1") == 1
        with pytest.raises(KeyRevoked):
            await held.get(timeout=1)
        late = hub.subscribe("some-action", key_id="k1")
        with pytest.raises(KeyRevoked):
            await late.get(timeout=0)
        assert await other.get(timeout=0) is None
        assert await server_own.get(timeout=0) is None
        assert hub.held_keys() == {"k2"}
        for sub in (held, other, server_own, late):
            sub.close()

    asyncio.run(scenario())


# -- changes already in flight when the key is revoked ------------------------------------
@pytest.fixture
def governor(backend: str, tmp_path: Path) -> Iterator[Governor]:
    with migrated_store(backend, tmp_path) as store:
        yield Governor(store, Policy.from_file(SEED_POLICY), secret_key=IN_PROCESS_SECRET)


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_a_decision_in_flight_when_its_key_is_revoked_is_refused_with_401(governor: Governor, verb: str) -> None:
    """The key is checked when a request arrives; a revocation that commits between that
    check and the decision's transaction must still keep the vote from being recorded."""
    from faramesh.errors import Unauthorized
    from faramesh.service import Submission

    g = governor
    agent_info, _ = service_keys.create_key(g.store, role=Role.AGENT, name="agent")
    _, secret = service_keys.create_key(g.store, role=Role.APPROVER, name="approver")
    agent = agent_info.identity()
    action = g.submit(agent, Submission("refund", "process", {"amount": 500}, {}))
    voter = g.authenticate(secret)  # the request arrived with an active key...
    assert voter is not None
    g.revoke_key(voter.key_id, actor="admin")  # ...which is revoked before its decision runs
    decide = g.approve if verb == "approve" else g.deny
    with pytest.raises(Unauthorized) as refused:
        decide(voter, action["id"], reason="in flight")
    assert refused.value.status_code == 401
    after = g.get(agent, action["id"])
    assert after["status"] == "pending_approval"
    assert after["approvals"] == []
    assert [e["event"] for e in g.events(agent, action["id"])] == ["action.submitted"]


def test_a_result_in_flight_when_its_key_is_revoked_is_refused_with_401(governor: Governor) -> None:
    from faramesh.errors import Unauthorized
    from faramesh.service import Submission

    g = governor
    _, secret = service_keys.create_key(g.store, role=Role.AGENT, name="agent")
    agent = g.authenticate(secret)
    assert agent is not None
    action = g.submit(agent, Submission("refund", "process", {"amount": 50}, {}))
    assert action["status"] == "allowed"
    g.revoke_key(agent.key_id, actor="admin")
    with pytest.raises(Unauthorized) as refused:
        g.report_result(agent, action["id"], success=True, result={"ok": True})
    assert refused.value.status_code == 401
    admin_info, _ = service_keys.create_key(g.store, role=Role.ADMIN, name="admin")
    assert g.get(admin_info.identity(), action["id"])["status"] == "allowed"


# -- replicas (PostgreSQL) ---------------------------------------------------------------
@pytest.mark.backends("postgresql")
def test_revocation_on_replica_a_closes_the_stream_held_on_replica_b(
    pg_url: str, start_server: Callable[..., ServerProcess], feeds: Callable[..., Feed]
) -> None:
    a = start_server(database_url=pg_url)
    b = start_server(database_url=pg_url)
    assert a.admin_key
    r = httpx.post(a.url + "/v1/keys", json={"role": "approver"}, headers=auth(a.admin_key), timeout=10)
    approver_id, approver = r.json()["id"], r.json()["key"]
    agent = a.create_key("agent")
    on_b = feeds(b.url, approver)
    kept = feeds(b.url, a.admin_key)
    action = submit(a.url, agent)
    on_b.wait_for_action(action["id"])

    revoke_by_api(a.url, a.admin_key, approver_id)
    assert on_b.ended.wait(CLOSE_DEADLINE), "the stream on replica B outlived a revocation on replica A"
    later = submit(b.url, agent)
    assert later["id"] not in on_b.action_ids()
    kept.wait_for_action(later["id"])  # other keys' streams on B are untouched


@pytest.mark.backends("postgresql")
def test_revocation_on_replica_a_or_by_the_cli_ends_a_wait_on_replica_b(
    pg_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    """Replica A is a `faramesh serve` process, replica B this process (so the test
    can see when its wait has started); both on one PostgreSQL database."""
    # B's periodic key re-check is off: only the change notice can end the wait in time.
    with serve_in_process(pg_url, key_recheck=3600) as b:
        # Replicas share the server secret that seals the permit signing key.
        a = start_server(database_url=pg_url, env={"FARAMESH_SECRET_KEY": IN_PROCESS_SECRET})
        a.admin_key = b.admin_key
        for revoke_with in ("replica A", "cli"):
            agent_id, agent = b.new_key("agent")
            action = submit(a.url, agent)
            thread, answer = _wait_in_thread(b.url, agent, action["id"])
            until(lambda action_id=action["id"]: b.governor.hub.has_subscribers(action_id), 10, "the wait to start")
            if revoke_with == "cli":
                done = subprocess.run(
                    faramesh_cmd("keys", "revoke", agent_id, "--database-url", pg_url),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stdout + done.stderr
            else:
                revoke_by_api(a.url, b.admin_key, agent_id)
            thread.join(CLOSE_DEADLINE)
            assert not thread.is_alive(), f"a wait on replica B outlived a revocation by {revoke_with}"
            assert_error(answer["r"], 401, "unauthorized")
            # B had verified (and remembered) the key for the wait; the notice made it forget.
            r = httpx.get(b.url + "/v1/actions", headers=auth(agent), timeout=10)
            assert r.status_code == 401, f"replica B still took a key revoked by {revoke_with}: {r.text}"
