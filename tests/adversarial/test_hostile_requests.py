"""Hostile requests against the real server: each gets the documented JSON error with
a 4xx (never a 5xx, never a hang), and nothing the server stores changes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.adversarial.support import assert_error, db_path, raw_exchange, unchanged
from tests.conftest import ServerProcess, auth

JSON = {"Content-Type": "application/json"}
GOOD = b'{"tool":"refund","operation":"process","params":{"amount":5}}'
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # {pending} / {allowed} / {key_id} are filled in from the fixture
    body: bytes | None = None
    role: str | None = "agent"  # whose key; None sends no key
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    status: int | tuple[int, ...] = 422
    code: str | None = None


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> dict[str, Any]:
    """Keys of every role, one pending and one allowed action, and a revoked key."""
    keys = {
        "agent": server.create_key("agent"),
        "approver": server.create_key("approver"),
        "admin": server.admin_key or "",
        "revoked": server.create_key("agent"),
    }
    listed = httpx.get(server.url + "/v1/keys", headers=auth(keys["admin"])).json()["keys"]
    revoked_id = next(k["id"] for k in listed if keys["revoked"].startswith(k["prefix"]))
    assert httpx.delete(f"{server.url}/v1/keys/{revoked_id}", headers=auth(keys["admin"])).status_code == 200
    agent_id = next(k["id"] for k in listed if keys["agent"].startswith(k["prefix"]))

    def submit(amount: int) -> dict[str, Any]:
        body = {"tool": "refund", "operation": "process", "params": {"amount": amount}}
        r = httpx.post(server.url + "/v1/actions", json=body, headers=auth(keys["agent"]))
        assert r.status_code == 201
        return dict(r.json())

    pending, allowed = submit(500), submit(5)
    assert pending["status"] == "pending_approval" and allowed["status"] == "allowed"
    with closing(sqlite3.connect(f"file:{db_path(server)}?mode=ro", uri=True)) as conn:
        stored_hash = conn.execute("SELECT key_hash FROM api_keys WHERE id = ?", (agent_id,)).fetchone()[0]
    return {
        "keys": keys,
        "ids": {"pending": pending["id"], "allowed": allowed["id"], "key_id": agent_id},
        "stored_hash": stored_hash,
    }


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def submit_with(**fields: Any) -> bytes:
    return body({"tool": "refund", "operation": "process", "params": {"amount": 5}} | fields)


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


BIG_INT = "9" * 5000
DEEP_LISTS = b"[" * 100_000 + b"]" * 100_000

MALFORMED: list[tuple[str, bytes]] = [
    ("truncated", b'{"tool":'),
    ("unquoted-keys", b'{tool:"refund",operation:"process"}'),
    ("single-quotes", b"{'tool':'refund','operation':'process'}"),
    ("trailing-comma", b'{"tool":"refund","operation":"process",}'),
    ("missing-comma", b'{"tool":"refund" "operation":"process"}'),
    ("trailing-garbage", GOOD + b" x"),
    ("two-documents", GOOD + GOOD),
    ("lone-brace", b"}"),
    ("invalid-utf8", b'{"tool":"refund\xff\xfe","operation":"process"}'),
    ("nul-byte", b"\x00"),
    ("comment", b"/* hi */" + GOOD),
    ("raw-control-char", b'{"tool":"ref\x01und","operation":"process"}'),
    ("lone-surrogate", b'{"tool":"refund","operation":"process","params":{"a":"\\ud800"}}'),
    ("utf8-bom", b"\xef\xbb\xbf" + GOOD),
    ("utf16", GOOD.decode().encode("utf-16")),
    ("duplicate-key", b'{"tool":"refund","operation":"process","params":{"amount":500,"amount":5}}'),
    ("duplicate-top-key", b'{"tool":"user_management","tool":"refund","operation":"process"}'),
    ("duplicate-nested-key", b'{"tool":"refund","operation":"process","context":{"env":{"a":1,"a":2}}}'),
    ("nan", b'{"tool":"refund","operation":"process","params":{"amount":NaN}}'),
    ("infinity", b'{"tool":"refund","operation":"process","params":{"amount":Infinity}}'),
    ("minus-infinity", b'{"tool":"refund","operation":"process","params":{"amount":-Infinity}}'),
    ("lowercase-nan", b'{"tool":"refund","operation":"process","params":{"amount":nan}}'),
    ("overflowing-float", b'{"tool":"refund","operation":"process","params":{"amount":1e999}}'),
    ("overflowing-negative-float", b'{"tool":"refund","operation":"process","params":{"amount":-1e999}}'),
    ("nan-in-context", b'{"tool":"refund","operation":"process","context":{"risk":NaN}}'),
    ("int-5000-digits", b'{"tool":"refund","operation":"process","params":{"amount":' + BIG_INT.encode() + b"}}"),
    ("neg-int-5000-digits", b'{"tool":"refund","operation":"process","params":{"amount":-' + BIG_INT.encode() + b"}}"),
    ("int-2-to-the-64", b'{"tool":"refund","operation":"process","params":{"amount":18446744073709551616}}'),
    ("int-below-int64", b'{"tool":"refund","operation":"process","params":{"amount":-9223372036854775809}}'),
    ("int-30-digits-in-list", b'{"tool":"refund","operation":"process","params":{"ids":[1,' + b"1" * 30 + b"]}}"),
    ("int-25-digits-in-context", b'{"tool":"r","operation":"p","context":{"account":' + b"7" * 25 + b"}}"),
    ("int-400-digits-in-context", b'{"tool":"r","operation":"p","context":{"n":' + b"1" * 400 + b"}}"),
    ("lists-100000-deep", DEEP_LISTS),
    ("objects-2000-deep", b'{"a":' * 2000 + b"1" + b"}" * 2000),
]

CASES: list[Case] = []
CASES += [Case(f"malformed/{n}", "POST", "/v1/actions", b, code="invalid_json") for n, b in MALFORMED]
# The same bodies at every other endpoint that reads JSON.
for n, b in MALFORMED[:4] + MALFORMED[15:16] + MALFORMED[18:19] + MALFORMED[25:26]:
    CASES += [
        Case(f"malformed-decide/{n}", "POST", "/v1/decide", b, code="invalid_json"),
        Case(f"malformed-gate/{n}", "POST", "/v1/gate/decide", b, code="invalid_json"),
        Case(f"malformed-result/{n}", "POST", "/v1/actions/{allowed}/result", b, code="invalid_json"),
        Case(f"malformed-approve/{n}", "POST", "/v1/actions/{pending}/approve", b, "approver", code="invalid_json"),
        Case(f"malformed-approval/{n}", "POST", "/v1/actions/{pending}/approval", b, "approver", code="invalid_json"),
        Case(f"malformed-keys/{n}", "POST", "/v1/keys", b, "admin", code="invalid_json"),
    ]

WRONG_TOP_LEVEL = [b"[]", b'[{"tool":"refund","operation":"process"}]', b'"refund"', b"42", b"true", b"null", b"-0.5"]
CASES += [Case(f"top-level/actions/{b.decode()[:12]}", "POST", "/v1/actions", b) for b in WRONG_TOP_LEVEL]
CASES += [Case(f"top-level/decide/{b.decode()[:12]}", "POST", "/v1/decide", b) for b in WRONG_TOP_LEVEL]
CASES += [
    Case(f"top-level/result/{b.decode()[:12]}", "POST", "/v1/actions/{allowed}/result", b) for b in WRONG_TOP_LEVEL
]
CASES += [
    Case(f"top-level/approve/{b.decode()[:12]}", "POST", "/v1/actions/{pending}/approve", b, "approver")
    for b in WRONG_TOP_LEVEL
    if b != b"null"  # null is "no body", which approve accepts
]
CASES += [Case(f"top-level/keys/{b.decode()[:12]}", "POST", "/v1/keys", b, "admin") for b in WRONG_TOP_LEVEL]

FIELDS: list[tuple[str, str, bytes, str | None]] = [
    # (name, path, body, role)
    ("empty-object", "/v1/actions", b"{}", None),
    ("no-operation", "/v1/actions", body({"tool": "refund"}), None),
    ("no-tool", "/v1/actions", body({"operation": "process"}), None),
    ("empty-tool", "/v1/actions", submit_with(tool=""), None),
    ("empty-operation", "/v1/actions", submit_with(operation=""), None),
    ("null-tool", "/v1/actions", submit_with(tool=None), None),
    ("numeric-tool", "/v1/actions", submit_with(tool=123), None),
    ("list-tool", "/v1/actions", submit_with(tool=["refund"]), None),
    ("object-tool", "/v1/actions", submit_with(tool={"name": "refund"}), None),
    ("bool-operation", "/v1/actions", submit_with(operation=True), None),
    ("tool-129-chars", "/v1/actions", submit_with(tool="a" * 129), None),
    ("tool-1mb-name", "/v1/actions", submit_with(tool="a" * 500_000), None),
    ("tool-with-space", "/v1/actions", submit_with(tool="refund now"), None),
    ("tool-with-quote", "/v1/actions", submit_with(tool="refund'--"), None),
    ("list-params", "/v1/actions", submit_with(params=[1, 2]), None),
    ("string-params", "/v1/actions", submit_with(params="amount=5"), None),
    ("numeric-params", "/v1/actions", submit_with(params=5), None),
    ("null-params", "/v1/actions", submit_with(params=None), None),
    ("list-context", "/v1/actions", submit_with(context=["a"]), None),
    ("null-context", "/v1/actions", submit_with(context=None), None),
    ("numeric-agent-id", "/v1/actions", submit_with(agent_id=7), None),
    ("empty-agent-id", "/v1/actions", submit_with(agent_id=""), None),
    ("blank-agent-id", "/v1/actions", submit_with(agent_id="   "), None),
    ("control-char-agent-id", "/v1/actions", submit_with(agent_id="bot\x00a"), None),
    ("zero-width-agent-id", "/v1/actions", submit_with(context={"agent_id": "bot\u200b"}), None),
    ("long-agent-id", "/v1/actions", submit_with(agent_id="a" * 201), None),
    ("numeric-context-agent-id", "/v1/actions", submit_with(context={"agent_id": 5}), None),
    ("params-33-deep-lists", "/v1/actions", submit_with(params={"a": nested(33)}), None),
    ("params-33-deep-objects", "/v1/actions", submit_with(params={"a": nested(33, kind="dict")}), None),
    ("context-40-deep", "/v1/actions", submit_with(context={"a": nested(40)}), None),
    ("decide-empty", "/v1/decide", b"{}", None),
    ("decide-empty-tool", "/v1/decide", submit_with(tool=""), None),
    ("gate-no-operation", "/v1/gate/decide", body({"tool": "refund"}), None),
    ("result-empty", "/v1/actions/{allowed}/result", b"{}", None),
    ("result-string-success", "/v1/actions/{allowed}/result", body({"success": "true"}), None),
    ("result-numeric-success", "/v1/actions/{allowed}/result", body({"success": 1}), None),
    ("result-null-success", "/v1/actions/{allowed}/result", body({"success": None}), None),
    ("result-numeric-error", "/v1/actions/{allowed}/result", body({"success": False, "error": 5}), None),
    ("result-unknown-field", "/v1/actions/{allowed}/result", body({"success": True, "status": "approved"}), None),
    ("result-40-deep", "/v1/actions/{allowed}/result", body({"success": True, "result": nested(40)}), None),
    ("approve-numeric-reason", "/v1/actions/{pending}/approve", body({"reason": 5}), "approver"),
    ("approve-long-reason", "/v1/actions/{pending}/approve", body({"reason": "x" * 2001}), "approver"),
    ("approve-unknown-field", "/v1/actions/{pending}/approve", body({"status": "approved"}), "approver"),
    ("deny-list-reason", "/v1/actions/{pending}/deny", body({"reason": ["no"]}), "approver"),
    ("approval-empty", "/v1/actions/{pending}/approval", b"{}", "approver"),
    ("approval-no-approve", "/v1/actions/{pending}/approval", body({"token": "t"}), "approver"),
    ("approval-numeric-token", "/v1/actions/{pending}/approval", body({"token": 5, "approve": True}), "approver"),
    ("approval-string-approve", "/v1/actions/{pending}/approval", body({"token": "t", "approve": "yes"}), "approver"),
    ("keys-empty", "/v1/keys", b"{}", "admin"),
    ("keys-unknown-role", "/v1/keys", body({"role": "root"}), "admin"),
    ("keys-unknown-field", "/v1/keys", body({"role": "agent", "is_admin": True}), "admin"),
    ("keys-empty-agent-id", "/v1/keys", body({"role": "agent", "agent_id": ""}), "admin"),
    ("keys-blank-agent-id", "/v1/keys", body({"role": "agent", "agent_id": "   "}), "admin"),
    ("keys-control-char-agent-id", "/v1/keys", body({"role": "agent", "agent_id": "billing-bot\u0000"}), "admin"),
    ("keys-zero-width-agent-id", "/v1/keys", body({"role": "agent", "agent_id": "billing-bot\u200b"}), "admin"),
    ("keys-bidi-agent-id", "/v1/keys", body({"role": "agent", "agent_id": "\u202etob-gnillib"}), "admin"),
    ("keys-string-groups", "/v1/keys", body({"role": "approver", "groups": "finance"}), "admin"),
    ("keys-too-many-groups", "/v1/keys", body({"role": "approver", "groups": [str(i) for i in range(51)]}), "admin"),
]
CASES += [Case(f"fields/{n}", "POST", p, b, role or "agent", code=None) for n, p, b, role in FIELDS]

CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "text/json",
    "application/jsonp",
    "application/octet-stream",
    "image/png",
]
for ctype in CONTENT_TYPES:
    CASES += [
        Case(f"content-type/actions/{ctype}", "POST", "/v1/actions", GOOD, headers={"Content-Type": ctype}, status=415),
        Case(
            f"content-type/result/{ctype}",
            "POST",
            "/v1/actions/{allowed}/result",
            b'{"success":true}',
            headers={"Content-Type": ctype},
            status=415,
        ),
        Case(
            f"content-type/keys/{ctype}",
            "POST",
            "/v1/keys",
            b'{"role":"admin"}',
            "admin",
            headers={"Content-Type": ctype},
            status=415,
        ),
    ]
CASES += [
    Case("content-type/actions/missing", "POST", "/v1/actions", GOOD, headers={}, status=415),
    Case("content-type/approve/missing", "POST", "/v1/actions/{pending}/approve", b"{}", "approver", {}, 415),
    Case("content-type/keys/missing", "POST", "/v1/keys", b'{"role":"admin"}', "admin", {}, 415),
]

METHODS = [
    ("PUT", "/v1/actions"),
    ("PATCH", "/v1/actions"),
    ("DELETE", "/v1/actions"),
    ("TRACE", "/v1/actions"),
    ("OPTIONS", "/v1/actions"),
    ("CONNECT", "/v1/actions"),
    ("POST", "/v1/actions/{pending}"),
    ("PUT", "/v1/actions/{pending}"),
    ("DELETE", "/v1/actions/{pending}"),
    ("PATCH", "/v1/actions/{pending}"),
    ("GET", "/v1/actions/{pending}/approve"),
    ("PUT", "/v1/actions/{pending}/approve"),
    ("DELETE", "/v1/actions/{pending}/deny"),
    ("GET", "/v1/actions/{allowed}/result"),
    ("PUT", "/v1/actions/{allowed}/result"),
    ("GET", "/v1/decide"),
    ("PUT", "/v1/keys"),
    ("DELETE", "/v1/keys"),
    ("GET", "/v1/keys/{key_id}"),
    ("PATCH", "/v1/keys/{key_id}"),
    ("POST", "/v1/policy"),
    ("DELETE", "/v1/policy"),
    ("GET", "/v1/policy/reload"),
    ("POST", "/v1/events"),
    ("POST", "/health"),
    ("DELETE", "/openapi.json"),
]
CASES += [Case(f"method/{m} {p}", m, p, None, "admin", {}, 405, "method_not_allowed") for m, p in METHODS]

PATHS = [
    "/v1/actions/%2e%2e%2fkeys",
    "/v1/actions/..%2Fkeys",
    "/v1/actions/..%5Cpolicy",
    "/v1/actions/{pending}%00",
    "/v1/actions/%00{pending}",
    "/v1/actions/{pending}%20",
    "/v1/actions/%20{pending}",
    "/v1/actions/{pending}%E2%80%8B",
    "/v1/actions/{PENDING}",
    "/v1/actions/%FF%FE",
    "/v1/actions/%25",
    "/v1/actions/%2A",
    "/v1/actions/'%20OR%20'1'='1",
    "/v1/actions/" + "a" * 65,
    "/v1/actions/" + "a" * 4000,
    "/v1/actions/" + UNKNOWN,
    "/v1/actions/" + UNKNOWN + "/events",
    "/v1/actions/" + UNKNOWN + "/wait?timeout=0",
    "/V1/actions",
    "/v1/Actions",
    "//v1/actions",
    "/v1//actions",
    "/v1/actions;jsessionid=1",
    "/v2/actions",
    "/v1/actions/{pending}/approve/extra",
    "/%2e%2e/%2e%2e/etc/passwd",
]
CASES += [Case(f"path/GET {p}", "GET", p, None, "agent", {}, (404, 405, 422)) for p in PATHS]
CASES += [
    Case("path/approve-traversal", "POST", "/v1/actions/%2e%2e/approve", b"{}", "approver", dict(JSON), (404, 422)),
    Case("path/approve-nul", "POST", "/v1/actions/{pending}%00/approve", b"{}", "approver", dict(JSON), (404, 422)),
    Case("path/approve-long", "POST", "/v1/actions/" + "a" * 65 + "/approve", b"{}", "approver", dict(JSON), 422),
    Case("path/result-unknown", "POST", f"/v1/actions/{UNKNOWN}/result", b'{"success":true}', status=404),
    Case("path/revoke-traversal", "DELETE", "/v1/keys/..%2F..%2Fetc", None, "admin", {}, (404, 422)),
    Case("path/revoke-long", "DELETE", "/v1/keys/" + "k" * 33, None, "admin", {}, 422),
    Case("path/revoke-unknown", "DELETE", "/v1/keys/ffffffffffffffff", None, "admin", {}, 404),
]

QUERIES = [
    "/v1/actions?limit=0",
    "/v1/actions?limit=-1",
    "/v1/actions?limit=501",
    "/v1/actions?limit=abc",
    "/v1/actions?limit=1e3",
    "/v1/actions?limit=99999999999999999999999",
    "/v1/actions?cursor=-1",
    "/v1/actions?cursor=abc",
    "/v1/actions?cursor=99999999999999999999999",
    "/v1/actions?cursor=9223372036854775808",
    "/v1/actions?offset=-1",
    "/v1/actions?offset=1000001",
    "/v1/actions?status=bogus",
    "/v1/actions?status=%00",
    "/v1/actions?tool=" + "t" * 129,
    "/v1/actions?id_prefix=" + "p" * 65,
    "/v1/actions/{pending}/wait?timeout=-1",
    "/v1/actions/{pending}/wait?timeout=121",
    "/v1/actions/{pending}/wait?timeout=nan",
    "/v1/actions/{pending}/wait?timeout=inf",
    "/v1/actions/{pending}/wait?timeout=abc",
]
CASES += [Case(f"query/{q}", "GET", q, None, "agent", {}, 422) for q in QUERIES]
CASES += [
    Case("header/last-event-id-huge", "GET", "/v1/events", None, "agent", {"Last-Event-ID": "9" * 30}, 422),
    Case("header/last-event-id-negative", "GET", "/v1/events", None, "agent", {"Last-Event-ID": "-5"}, 422),
    Case("header/last-event-id-text", "GET", "/v1/events", None, "agent", {"Last-Event-ID": "abc"}, 422),
    Case(
        "header/idempotency-key-too-long", "POST", "/v1/actions", GOOD, "agent", JSON | {"Idempotency-Key": "k" * 201}
    ),
    Case("header/idempotency-key-empty", "POST", "/v1/actions", GOOD, "agent", JSON | {"Idempotency-Key": ""}),
]
CASES += [
    Case("too-large/actions", "POST", "/v1/actions", submit_with(params={"x": "a" * (1024 * 1024)}), status=413),
    Case(
        "too-large/result",
        "POST",
        "/v1/actions/{allowed}/result",
        body({"success": True, "r": "a" * 2**20}),
        status=413,
    ),
    Case("too-large/keys", "POST", "/v1/keys", body({"role": "agent", "name": "n" * 2**21}), "admin", status=413),
]

# Credentials: every one of these is a 401 at every endpoint that needs a key.
CREDENTIALS: list[tuple[str, dict[str, str]]] = [
    ("none", {}),
    ("bearer-alone", {"Authorization": "Bearer"}),
    ("bearer-tab", {"Authorization": "Bearer\t{agent}"}),
    ("basic", {"Authorization": "Basic {agent}"}),
    ("token-scheme", {"Authorization": "Token {agent}"}),
    ("no-scheme", {"Authorization": "{agent}"}),
    ("wrong-key", {"Authorization": "Bearer fm_" + "A" * 43}),
    ("key-plus-char", {"Authorization": "Bearer {agent}x"}),
    ("key-minus-char", {"Authorization": "Bearer {agent_short}"}),
    ("key-upper", {"Authorization": "Bearer {agent_upper}"}),
    ("key-with-suffix-word", {"Authorization": "Bearer {agent} admin"}),
    ("key-prefix-only", {"Authorization": "Bearer {agent_prefix}"}),
    ("stored-hash", {"Authorization": "Bearer {stored_hash}"}),
    ("huge-key", {"Authorization": "Bearer " + "k" * 20_000}),
    ("revoked", {"Authorization": "Bearer {revoked}"}),
    ("revoked-x-api-key", {"X-API-Key": "{revoked}"}),
    ("wrong-x-api-key", {"X-API-Key": "nope"}),
]
AUTH_ENDPOINTS = [
    ("POST", "/v1/actions", GOOD),
    ("GET", "/v1/actions", None),
    ("GET", "/v1/actions/{pending}", None),
    ("GET", "/v1/actions/{pending}/wait?timeout=0", None),
    ("GET", "/v1/actions/{pending}/events", None),
    ("POST", "/v1/actions/{pending}/approve", b"{}"),
    ("POST", "/v1/actions/{pending}/deny", b"{}"),
    ("POST", "/v1/actions/{allowed}/result", b'{"success":true}'),
    ("POST", "/v1/decide", GOOD),
    ("GET", "/v1/policy", None),
    ("POST", "/v1/policy/reload", None),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", b'{"role":"admin"}'),
    ("DELETE", "/v1/keys/{key_id}", None),
    ("GET", "/v1/events", None),
]
CASES += [
    Case(f"credentials/{cname}/{m} {p}", m, p, b, None, JSON | cheaders, 401, "unauthorized")
    for cname, cheaders in CREDENTIALS
    for m, p, b in AUTH_ENDPOINTS
]


def fill(text: str, world: dict[str, Any]) -> str:
    keys, ids = world["keys"], world["ids"]
    agent = keys["agent"]
    return (
        text.replace("{pending}", ids["pending"])
        .replace("{PENDING}", ids["pending"].upper())
        .replace("{allowed}", ids["allowed"])
        .replace("{key_id}", ids["key_id"])
        .replace("{agent_short}", agent[:-1])
        .replace("{agent_upper}", agent.upper())
        .replace("{agent_prefix}", agent[:10])
        .replace("{agent}", agent)
        .replace("{revoked}", keys["revoked"])
        .replace("{stored_hash}", world["stored_hash"])
    )


def send(server: ServerProcess, world: dict[str, Any], case: Case) -> httpx.Response:
    headers = {k: fill(v, world) for k, v in case.headers.items()}
    if case.role is not None:
        headers |= auth(world["keys"][case.role])
    # httpx resolves literal dot segments; those are sent raw in a test of their own.
    url = httpx.URL(server.url).copy_with(raw_path=fill(case.path, world).encode())
    with httpx.Client(timeout=30) as client:
        return client.request(case.method, url, content=case.body, headers=headers)


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_is_refused_with_a_json_4xx(server: ServerProcess, world: dict[str, Any], case: Case) -> None:
    with unchanged(server):
        r = send(server, world, case)
        assert r.status_code < 500, f"{case.name}: {r.status_code} {r.text[:300]}"
        assert_error(r, case.status, case.code)
        if case.status == 401:
            assert r.headers.get("www-authenticate") == "Bearer"
        if case.status == 405:
            assert r.headers.get("allow")


def test_actions_are_untouched_after_the_barrage(server: ServerProcess, world: dict[str, Any]) -> None:
    """After everything above, the pending action is still pending and the allowed one
    still allowed: no hostile request moved either."""
    headers = auth(world["keys"]["approver"])
    pending = httpx.get(f"{server.url}/v1/actions/{world['ids']['pending']}", headers=headers).json()
    allowed = httpx.get(f"{server.url}/v1/actions/{world['ids']['allowed']}", headers=headers).json()
    assert (pending["status"], pending["version"]) == ("pending_approval", 1)
    assert (allowed["status"], allowed["version"]) == ("allowed", 1)
    assert pending["approvals"] == []


@pytest.mark.parametrize(
    "target",
    [
        b"/v1/actions/../keys",
        b"/v1/keys/../policy",
        b"/v1/actions/./../policy/reload",
        b"/v1/../v1/keys",
        b"/../../etc/passwd",
    ],
)
def test_dot_segments_do_not_reach_another_route(server: ServerProcess, world: dict[str, Any], target: bytes) -> None:
    """Dot segments sent raw on the wire are not resolved into another route."""
    key = world["keys"]["agent"].encode()
    with unchanged(server):
        resp = raw_exchange(
            server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\r\n\r\n"
        )
    assert resp.status in (404, 405), resp
    assert json.loads(resp.body)["error"]["code"] in ("not_found", "method_not_allowed")


def test_stored_hash_is_not_a_key(world: dict[str, Any]) -> None:
    """Sanity for the credential cases: the stored value is the digest of the key."""
    assert world["stored_hash"] == hashlib.sha256(world["keys"]["agent"].encode()).hexdigest()


@pytest.mark.parametrize(
    "payload",
    [
        {"tool": "a" * 500_000, "operation": "process"},
        {"tool": "refund", "operation": "\u200b" * 100_000},
        {"tool": "refund", "operation": "process", "params": {"k" * 300_000: nested(40)}},
        {"tool": "refund", "operation": "process", "context": {"k" * 300_000: float("nan")}},
    ],
    ids=["huge-tool", "huge-operation", "huge-key-too-deep", "huge-key-nan"],
)
def test_errors_do_not_echo_huge_input(server: ServerProcess, world: dict[str, Any], payload: dict[str, Any]) -> None:
    """A refusal quotes at most a short piece of the bad input, so a big request
    does not come back as an equally big error."""
    with unchanged(server):
        r = httpx.post(
            server.url + "/v1/actions",
            content=json.dumps(payload, allow_nan=True).encode(),
            headers=JSON | auth(world["keys"]["agent"]),
            timeout=30,
        )
    assert_error(r, 422)
    assert len(r.content) < 4096, len(r.content)
