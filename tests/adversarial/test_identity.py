"""Identity: who a key is decides what it may do, whatever the request claims."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from faramesh import keys as keys_module
from faramesh.model import Role
from faramesh.policy import Policy
from faramesh.service import Governor, Submission
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.adversarial.support import assert_error, db_path, unchanged
from tests.conftest import SEED_POLICY, ServerProcess, auth
from tests.inprocess import IN_PROCESS_SECRET


@pytest.fixture(scope="module")
def ks(server: ServerProcess) -> dict[str, str]:
    return {
        "agent": server.create_key("agent"),
        "other_agent": server.create_key("agent"),
        "bound": server.create_key("agent", agent_id="billing-bot"),
        "approver": server.create_key("approver"),
        "approver_bound": server.create_key("approver", agent_id="billing-bot"),
        "admin": server.admin_key or "",
    }


def submit(server: ServerProcess, key: str, amount: int = 500, **extra: Any) -> httpx.Response:
    body = {"tool": "refund", "operation": "process", "params": {"amount": amount}, "reattach": False} | extra
    return httpx.post(server.url + "/v1/actions", json=body, headers=auth(key), timeout=30)


def key_id(server: ServerProcess, key: str) -> str:
    listed = httpx.get(server.url + "/v1/keys", headers=auth(server.admin_key or "")).json()["keys"]
    return str(next(k["id"] for k in listed if key.startswith(k["prefix"])))


# -- a bound agent key cannot act as another agent ------------------------------------------------------------

OTHER_CLAIMS = [
    {"agent_id": "admin-bot"},
    {"context": {"agent_id": "admin-bot"}},
    {"agent_id": "billing-bot", "context": {"agent_id": "admin-bot"}},
    {"agent_id": "admin-bot", "context": {"agent_id": "billing-bot"}},
    {"context": {"agent_id": "BILLING-BOT"}},
    {"context": {"agent_id": "Billing-bot"}},
    {"context": {"agent_id": "billing-bot "}},
    {"context": {"agent_id": " billing-bot"}},
    {"agent_id": "billing\u2010bot"},  # a Unicode hyphen
    {"agent_id": "ｂｉｌｌｉｎｇ-bot"},
    {"agent_id": "bi\u0301lling-bot"},
    {"agent_id": "*"},
    {"agent_id": "billing-bot/../admin-bot"},
]


@pytest.mark.parametrize("claim", OTHER_CLAIMS, ids=[orjson.dumps(c).decode() for c in OTHER_CLAIMS])
@pytest.mark.parametrize("path", ["/v1/actions", "/v1/decide", "/v1/gate/decide"])
def test_bound_key_cannot_claim_another_agent(
    server: ServerProcess, ks: dict[str, str], claim: dict[str, Any], path: str
) -> None:
    body = {"tool": "refund", "operation": "process", "params": {"amount": 5}} | claim
    with unchanged(server):
        r = httpx.post(server.url + path, json=body, headers=auth(ks["bound"]), timeout=30)
    assert_error(r, 403, "forbidden")


@pytest.mark.parametrize(
    "claim",
    [{}, {"agent_id": "billing-bot"}, {"context": {"agent_id": "billing-bot"}}, {"agent_id": "default-agent"}],
)
def test_bound_key_acts_as_its_agent(server: ServerProcess, ks: dict[str, str], claim: dict[str, Any]) -> None:
    r = submit(server, ks["bound"], 5, **claim)
    assert r.status_code == 201 and r.json()["agent_id"] == "billing-bot"
    events = httpx.get(f"{server.url}/v1/actions/{r.json()['id']}/events", headers=auth(ks["approver"])).json()
    assert events["events"][0]["data"]["agent_id"] == "billing-bot"


# -- an agent sees only its own actions -----------------------------------------------------------------------


def test_agent_sees_only_its_own_actions_everywhere(server: ServerProcess, ks: dict[str, str]) -> None:
    theirs = submit(server, ks["agent"], 500, context={"agent_id": "shared-name"}).json()
    mine = submit(server, ks["other_agent"], 5, context={"agent_id": "shared-name"}).json()
    me = auth(ks["other_agent"])
    with unchanged(server):
        for path in (
            f"/v1/actions/{theirs['id']}",
            f"/v1/actions/{theirs['id']}/events",
            f"/v1/actions/{theirs['id']}/wait?timeout=0",
        ):
            assert_error(httpx.get(server.url + path, headers=me), 404, "not_found")
        r = httpx.post(f"{server.url}/v1/actions/{theirs['id']}/result", json={"success": True}, headers=me)
        assert_error(r, 404, "not_found")
        filters: list[dict[str, str]] = [
            {},
            {"agent_id": "shared-name"},
            {"status": "pending_approval"},
            {"id_prefix": theirs["id"][:8]},
            {"tool": "refund"},
        ]
        for query in filters:
            listed = httpx.get(server.url + "/v1/actions", params=query | {"limit": "500"}, headers=me).json()
            ids = {a["id"] for a in listed["actions"]}
            assert theirs["id"] not in ids, query
        listed = httpx.get(server.url + "/v1/actions", params={"limit": "500"}, headers=me).json()
        assert mine["id"] in {a["id"] for a in listed["actions"]}
    # The same unknown-or-hidden answer for an id that does not exist at all: no oracle.
    hidden = httpx.get(f"{server.url}/v1/actions/{theirs['id']}", headers=me).json()
    missing = httpx.get(f"{server.url}/v1/actions/{theirs['id'][:-1]}0", headers=me).json()
    assert hidden["error"]["code"] == missing["error"]["code"] == "not_found"


def test_agent_event_stream_shows_only_its_own_actions(server: ServerProcess, ks: dict[str, str]) -> None:
    seen: list[bytes] = []
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", server.url + "/v1/events", headers=auth(ks["other_agent"]), timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("data:"):
                    seen.append(line.encode())
                    if b"marker-mine" in line.encode():
                        done.set()
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(15)
    theirs = submit(server, ks["agent"], 500, context={"note": "marker-theirs"}).json()
    submit(server, ks["other_agent"], 5, context={"note": "marker-mine"})
    assert done.wait(15)
    joined = b"\n".join(seen)
    assert theirs["id"].encode() not in joined and b"marker-theirs" not in joined


# -- an agent cannot decide, reload policy, read policy or manage keys -------------------------------------------


def test_agent_cannot_approve_deny_reload_or_manage_keys(server: ServerProcess, ks: dict[str, str]) -> None:
    pending = submit(server, ks["other_agent"], 500).json()
    token = httpx.get(f"{server.url}/v1/actions/{pending['id']}", headers=auth(ks["approver"])).json()["approval_token"]
    victim = key_id(server, ks["approver"])
    for role in ("agent", "bound"):
        h = auth(ks[role])
        with unchanged(server):
            for verb in ("approve", "deny"):
                assert_error(httpx.post(f"{server.url}/v1/actions/{pending['id']}/{verb}", json={}, headers=h), 403)
            for approve in (True, False):
                r = httpx.post(
                    f"{server.url}/v1/actions/{pending['id']}/approval",
                    json={"token": token, "approve": approve},
                    headers=h,
                )
                assert_error(r, 403)
            assert_error(httpx.post(server.url + "/v1/policy/reload", headers=h), 403)
            assert_error(httpx.get(server.url + "/v1/policy", headers=h), 403)
            assert_error(httpx.get(server.url + "/v1/keys", headers=h), 403)
            for new_role in ("agent", "approver", "admin"):
                assert_error(httpx.post(server.url + "/v1/keys", json={"role": new_role}, headers=h), 403)
            assert_error(httpx.delete(f"{server.url}/v1/keys/{victim}", headers=h), 403)
            assert_error(httpx.delete(f"{server.url}/v1/keys/{key_id(server, ks[role])}", headers=h), 403)


@pytest.mark.parametrize("role", ["agent", "bound", "approver"])
def test_only_admins_manage_webhooks(server: ServerProcess, ks: dict[str, str], role: str) -> None:
    h = auth(ks[role])
    with unchanged(server):
        assert_error(httpx.get(server.url + "/v1/webhooks", headers=h), 403)
        r = httpx.post(server.url + "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=h)
        assert_error(r, 403)
        assert_error(httpx.delete(server.url + "/v1/webhooks/0123456789abcdef", headers=h), 403)
        assert_error(httpx.get(server.url + "/v1/webhooks/0123456789abcdef/deliveries", headers=h), 403)


def test_approver_cannot_manage_keys_or_reload_policy(server: ServerProcess, ks: dict[str, str]) -> None:
    h = auth(ks["approver"])
    with unchanged(server):
        assert_error(httpx.post(server.url + "/v1/policy/reload", headers=h), 403)
        assert_error(httpx.get(server.url + "/v1/keys", headers=h), 403)
        assert_error(httpx.post(server.url + "/v1/keys", json={"role": "admin"}, headers=h), 403)
        assert_error(httpx.delete(f"{server.url}/v1/keys/{key_id(server, ks['agent'])}", headers=h), 403)


# -- no key decides its own action ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["approver", "admin"])
def test_submitter_cannot_decide_its_own_action(server: ServerProcess, ks: dict[str, str], role: str) -> None:
    a = submit(server, ks[role], 500).json()
    assert a["status"] == "pending_approval"
    token = httpx.get(f"{server.url}/v1/actions/{a['id']}", headers=auth(ks[role])).json()["approval_token"]
    with unchanged(server):
        for verb in ("approve", "deny"):
            r = httpx.post(f"{server.url}/v1/actions/{a['id']}/{verb}", json={}, headers=auth(ks[role]))
            assert_error(r, 403, "forbidden")
        r = httpx.post(
            f"{server.url}/v1/actions/{a['id']}/approval",
            json={"token": token, "approve": True},
            headers=auth(ks[role]),
        )
        assert_error(r, 403, "forbidden")


def test_approver_bound_to_an_agent_cannot_approve_that_agents_action(
    server: ServerProcess, ks: dict[str, str]
) -> None:
    a = submit(server, ks["bound"], 500).json()
    assert a["agent_id"] == "billing-bot" and a["status"] == "pending_approval"
    with unchanged(server):
        r = httpx.post(f"{server.url}/v1/actions/{a['id']}/approve", json={}, headers=auth(ks["approver_bound"]))
        assert_error(r, 403, "forbidden")
    ok = httpx.post(f"{server.url}/v1/actions/{a['id']}/approve", json={}, headers=auth(ks["approver"]))
    assert ok.status_code == 200 and ok.json()["status"] == "approved"


# -- keys are stored only as hashes and compared in constant time ----------------------------------------------


def test_keys_are_stored_only_as_hashes(server: ServerProcess, ks: dict[str, str]) -> None:
    path = db_path(server)
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT id, key_hash, prefix FROM api_keys").fetchall()
        dump = "\n".join(conn.iterdump())
    stored = {h for _, h, _ in rows}
    for name, secret in ks.items():
        assert hashlib.sha256(secret.encode()).hexdigest() in stored, name
        assert secret not in dump, f"{name} key is stored in clear"
        assert secret[10:] not in dump, f"{name} key's secret part is stored"
    # Not in the raw files either: database, write-ahead log, shared memory.
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(path) + suffix)
        if f.exists():
            raw = f.read_bytes()
            for secret in ks.values():
                assert secret.encode() not in raw, f"{f.name} holds a key"
    # The key list shows a prefix, never the key or its hash.
    listed = httpx.get(server.url + "/v1/keys", headers=auth(ks["admin"])).text
    for secret in ks.values():
        assert secret not in listed and hashlib.sha256(secret.encode()).hexdigest() not in listed


def test_presenting_the_stored_hash_is_refused(server: ServerProcess, ks: dict[str, str]) -> None:
    with closing(sqlite3.connect(f"file:{db_path(server)}?mode=ro", uri=True)) as conn:
        hashes = [h for (h,) in conn.execute("SELECT key_hash FROM api_keys")]
    for h in hashes:
        assert_error(httpx.get(server.url + "/v1/actions", headers=auth(h)), 401)


def test_key_and_token_checks_use_constant_time_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison that grants access goes through hmac.compare_digest: a
    stored key hash, and an action's approval token."""
    store = Store(f"sqlite:///{tmp_path / 'ct.db'}")
    store.upgrade()
    try:
        info, secret = service_keys.create_key(store, role=Role.AGENT)
        approver_info, _ = service_keys.create_key(store, role=Role.APPROVER)
        calls: list[tuple[str, str]] = []
        real = hmac.compare_digest

        def spy(a: Any, b: Any) -> bool:
            calls.append((str(a), str(b)))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        assert store.read(lambda c: keys_module.authenticate(c, secret)) is not None
        assert (keys_module.hash_key(secret), keys_module.hash_key(secret)) in calls
        assert store.read(lambda c: keys_module.authenticate(c, secret + "x")) is None

        gov = Governor(store, Policy.from_file(SEED_POLICY), secret_key=IN_PROCESS_SECRET)
        agent = info.identity()
        approver = approver_info.identity()
        action = gov.submit(agent, Submission("refund", "process", {"amount": 500}, {}))
        token = gov.get(approver, action["id"])["approval_token"]
        calls.clear()
        with pytest.raises(Exception, match="token"):
            gov.approve(approver, action["id"], token="wrong")
        assert ("wrong", token) in calls
        assert gov.approve(approver, action["id"], token=token)["status"] == "approved"
        assert (token, token) in calls
    finally:
        store.close()


def test_identity_is_not_taken_from_headers(server: ServerProcess, ks: dict[str, str]) -> None:
    """Headers a proxy might set do not change who the caller is."""
    spoof = {"X-Faramesh-Role": "admin", "X-Agent-Id": "admin-bot", "X-Forwarded-User": "admin", "X-Role": "admin"}
    with unchanged(server):
        assert_error(httpx.get(server.url + "/v1/keys", headers=auth(ks["agent"]) | spoof), 403)
    r = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 5}},
        headers=auth(ks["bound"]) | spoof,
    )
    assert r.status_code == 201 and r.json()["agent_id"] == "billing-bot"


def test_event_replay_shows_an_agent_only_its_own_actions(server: ServerProcess, ks: dict[str, str]) -> None:
    """Reconnecting with Last-Event-ID: 0 replays history, filtered like the live stream."""
    theirs = submit(server, ks["agent"], 500, context={"note": "replay-theirs"}).json()
    mine = submit(server, ks["other_agent"], 5, context={"note": "replay-mine"}).json()
    seen: list[str] = []
    headers = auth(ks["other_agent"]) | {"Last-Event-ID": "0"}
    with httpx.stream("GET", server.url + "/v1/events", headers=headers, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith(": connected"):
                break
            seen.append(line)
    joined = "\n".join(seen)
    assert mine["id"] in joined
    assert theirs["id"] not in joined and "replay-theirs" not in joined


# -- key names and groups are printable: they name keys in logs and stand in as agent ids ----------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "agent", "name": "bot\nINFO faramesh.events: action.created forged"}, "name"),
        ({"role": "agent", "name": "bot\u0007"}, "name"),
        ({"role": "agent", "name": "bot\u200b"}, "name"),
        ({"role": "approver", "groups": ["finance\r\n"]}, "groups"),
        ({"role": "approver", "groups": ["ok", "bad\u0085"]}, "groups"),
    ],
)
def test_a_key_name_or_group_with_control_characters_is_refused(
    server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    """An unbound key's name becomes the agent id of its actions: with invisible or control
    characters it would look like another agent's id to the people who approve."""
    with unchanged(server):
        r = httpx.post(server.url + "/v1/keys", json=body, headers=auth(server.admin_key or ""))
    assert assert_error(r, 422)["error"]["field"] == field


def test_printable_names_and_groups_are_kept(server: ServerProcess) -> None:
    body = {"role": "approver", "name": "Zoë's key 🔑 (finance)", "groups": ["finance ops", "€uro"]}
    r = httpx.post(server.url + "/v1/keys", json=body, headers=auth(server.admin_key or ""))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == body["name"]


def test_an_old_key_whose_name_cannot_be_an_agent_id_acts_as_its_key_id(tmp_path: Path) -> None:
    """A key named before names were checked (here written straight into the database)
    does not lend its control characters to the agent id of its actions."""
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    store.upgrade()
    try:
        info, secret = service_keys.create_key(store, role=Role.AGENT, name="old-bot", actor="test")
        with closing(sqlite3.connect(tmp_path / "old.db")) as raw, raw:
            raw.execute("UPDATE api_keys SET name = ? WHERE id = ?", ("old\nbot", info.id))
        g = Governor(store, Policy.from_file(SEED_POLICY))
        identity = service_keys.authenticate(store, secret)
        action = g.submit(identity, Submission(tool="refund", operation="process", params={"amount": 5}, context={}))
        assert action["agent_id"] == f"key:{info.id}"
    finally:
        store.close()
