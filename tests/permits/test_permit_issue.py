"""Permits on allowed and approved actions, checked offline: by an independent Ed25519
check from the JWKS, and by `faramesh.permit.verify_permit` with its typed errors. On
SQLite and PostgreSQL, the app in-process on a fake clock."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from faramesh.permit import (
    PermitActionMismatch,
    PermitArgumentsMismatch,
    PermitError,
    PermitExpired,
    PermitKeys,
    PermitMalformed,
    PermitOperationMismatch,
    PermitSignatureInvalid,
    PermitToolMismatch,
    PermitUnknownKey,
    verify_action,
    verify_permit,
)
from tests.inprocess import InProcessServer
from tests.permits.support import (
    DELETE,
    LARGE,
    SMALL,
    audit_verify,
    b64url,
    b64url_encode,
    events,
    get,
    jwks,
    keys,
    post,
    submit,
)

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def app(make_client: Any) -> InProcessServer:
    server: InProcessServer = make_client()
    return server


def independent_check(permit: str, key_set: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the compact JWS with `cryptography` alone (no joserfc, no faramesh code):
    (header, claims). Raises InvalidSignature when it does not verify."""
    head, payload, signature = permit.split(".")
    header = json.loads(b64url(head))
    [jwk] = [k for k in key_set["keys"] if k["kid"] == header["kid"]]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    public = Ed25519PublicKey.from_public_bytes(b64url(jwk["x"]))
    public.verify(b64url(signature), f"{head}.{payload}".encode())
    return header, json.loads(b64url(payload))


def plain_params_hash(params: dict[str, Any]) -> str:
    # Sorted keys and no spaces: for these integer and ASCII values, the canonical JSON.
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_an_allowed_action_carries_a_permit_that_verifies_independently_from_the_jwks(app: InProcessServer) -> None:
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    assert action["status"] == "allowed"
    key_set = jwks(app)
    header, claims = independent_check(action["permit"], key_set)
    assert header["alg"] == "EdDSA" and header["kid"] == key_set["keys"][0]["kid"]
    assert claims["iss"] == "faramesh"
    assert claims["action_id"] == action["id"]
    assert (claims["tool"], claims["operation"]) == ("refund", "process")
    assert claims["request_hash"] == action["request_hash"]
    assert claims["params_hash"] == plain_params_hash(SMALL["params"])
    assert claims["policy_hash"] == action["policy_hash"]
    assert claims["approvers"] == [] and claims["status"] == "allowed" and claims["agent_id"] == "billing-bot"
    assert claims["exp"] - claims["iat"] == 300  # the default permit lifetime, 5m
    assert claims["iat"] == int(app.clock())
    assert action["permit_expires_at"] is not None

    # One changed byte in the claims or the signature, and the independent check fails.
    head, payload, signature = action["permit"].split(".")
    forged = json.loads(b64url(payload)) | {"params_hash": plain_params_hash({"amount": 5000})}
    forged_payload = b64url_encode(json.dumps(forged, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(InvalidSignature):
        independent_check(f"{head}.{forged_payload}.{signature}", key_set)
    flipped = b64url(signature)
    flipped = bytes([flipped[0] ^ 1]) + flipped[1:]
    with pytest.raises(InvalidSignature):
        independent_check(f"{head}.{payload}.{b64url_encode(flipped)}", key_set)

    # And the library's own check agrees.
    got = verify_permit(action["permit"], tool="refund", operation="process", params=SMALL["params"], keys=key_set,
                        action_id=action["id"], now=app.clock())  # fmt: skip
    assert got.action_id == action["id"] and got.kid == header["kid"]
    verify_action(action, tool="refund", operation="process", params=SMALL["params"], keys=key_set, now=app.clock())
    with pytest.raises(PermitMalformed):  # an action with no permit never runs
        verify_action(action | {"permit": None}, tool="refund", operation="process", params={}, keys=key_set)
    with pytest.raises(PermitActionMismatch):  # a permit copied onto another action
        verify_action(action | {"id": "another"}, tool="refund", operation="process", params=SMALL["params"],
                      keys=key_set, now=app.clock())  # fmt: skip
    for bad in (f"{head}.{forged_payload}.{signature}", f"{head}.{payload}.{b64url_encode(flipped)}"):
        with pytest.raises(PermitSignatureInvalid) as caught:
            verify_permit(
                bad, tool="refund", operation="process", params=SMALL["params"], keys=key_set, now=app.clock()
            )
        assert caught.value.reason == "signature"


def test_denied_held_cancelled_and_expired_actions_carry_no_permit(app: InProcessServer) -> None:
    k = keys(app)
    denied = submit(app, k["agent"], DELETE)
    held = submit(app, k["agent"], LARGE)
    to_cancel = submit(app, k["agent"], LARGE | {"params": {"amount": 600}})
    assert (denied["status"], held["status"]) == ("denied", "pending_approval")
    assert post(app, f"/v1/actions/{to_cancel['id']}/cancel", k["agent"]).json()["status"] == "cancelled"
    app.advance(24 * 3600 + 1)  # the default approval timeout: the held action expires
    expired = get(app, k["agent"], held["id"])
    assert expired["status"] == "denied" and "expired" in expired["reason"]
    for action in (denied, held, get(app, k["agent"], to_cancel["id"]), expired):
        assert "permit" not in action, action["status"]
    listed = app.get("/v1/actions", params={"limit": 50}, headers={"Authorization": f"Bearer {k['agent']}"}).json()
    assert all("permit" not in a for a in listed["actions"])


def test_an_approved_action_binds_the_approved_edited_arguments_and_the_approvers(app: InProcessServer) -> None:
    k = keys(app)
    held = submit(app, k["agent"], LARGE)
    assert "permit" not in held
    edited = {"amount": 80, "customer_id": "cus_2"}
    r = post(app, f"/v1/actions/{held['id']}/approve", k["approver"], {"reason": "lowered", "params": edited})
    assert r.status_code == 200, r.text
    approved = r.json()
    assert approved["status"] == "approved"
    _, claims = independent_check(approved["permit"], jwks(app))
    approver_id = app.get("/v1/keys", headers={"Authorization": f"Bearer {app.admin_key}"}).json()["keys"]
    [ann] = [key["id"] for key in approver_id if key["name"] == "ann"]
    assert claims["approvers"] == [ann] and claims["status"] == "approved"
    assert claims["params_hash"] == plain_params_hash(edited)
    assert claims["request_hash"] == approved["request_hash"] != held["request_hash"]

    with pytest.raises(PermitArgumentsMismatch) as caught:  # what the agent first asked for is not what may run
        verify_permit(approved["permit"], tool="refund", operation="process", params=LARGE["params"],
                      keys=jwks(app), now=app.clock())  # fmt: skip
    assert caught.value.field == "arguments" and caught.value.expected == claims["params_hash"]
    verify_permit(
        approved["permit"], tool="refund", operation="process", params=edited, keys=jwks(app), now=app.clock()
    )
    # The approval record carries the permit's hash.
    [record] = [e for e in events(app, held["id"]) if e["event"] == "action.approved"]
    assert record["data"]["permit"]["sha256"] == hashlib.sha256(approved["permit"].encode()).hexdigest()


def test_tampered_arguments_other_calls_and_garbage_are_refused_with_typed_errors(app: InProcessServer) -> None:
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    permit, key_set, now = action["permit"], jwks(app), app.clock()

    def check(**overrides: Any) -> None:
        call = {"tool": "refund", "operation": "process", "params": SMALL["params"], "keys": key_set, "now": now}
        verify_permit(overrides.pop("permit", permit), **(call | overrides))

    check()
    check(params={"customer_id": "cus_1", "amount": 50.0})  # the same JSON value, another spelling
    cases: list[tuple[dict[str, Any], type[PermitError], str]] = [
        ({"params": {"amount": 51, "customer_id": "cus_1"}}, PermitArgumentsMismatch, "arguments"),
        ({"params": {"amount": 50, "customer_id": "cus_1", "note": "x"}}, PermitArgumentsMismatch, "arguments"),
        ({"params": {"amount": float("nan")}}, PermitArgumentsMismatch, "arguments"),
        ({"tool": "payout"}, PermitToolMismatch, "tool"),
        ({"operation": "reverse"}, PermitOperationMismatch, "operation"),
        ({"action_id": "another-action"}, PermitActionMismatch, "action"),
        ({"permit": "not-a-permit"}, PermitMalformed, "malformed"),
        ({"permit": None}, PermitMalformed, "malformed"),
        ({"keys": {"keys": [key_set["keys"][0] | {"kid": "someone-else"}]}}, PermitUnknownKey, "unknown_key"),
    ]
    head, payload, signature = permit.split(".")
    hs256 = b64url_encode(json.dumps({"alg": "HS256", "kid": json.loads(b64url(head))["kid"]}).encode())
    cases.append(({"permit": f"{hs256}.{payload}.{signature}"}, PermitMalformed, "malformed"))
    for overrides, error, reason in cases:
        with pytest.raises(error) as caught:
            check(**overrides)
        assert caught.value.reason == reason, overrides
    with pytest.raises(PermitToolMismatch) as tool_error:
        check(tool="payout")
    assert (tool_error.value.expected, tool_error.value.actual) == ("refund", "payout")
    assert "refund" in str(tool_error.value) and "payout" in str(tool_error.value)


def test_an_expired_permit_is_refused_and_the_agent_gets_a_fresh_one_on_its_next_read(app: InProcessServer) -> None:
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    old = action["permit"]
    app.advance(301)  # past the 5m lifetime
    with pytest.raises(PermitExpired) as caught:
        verify_permit(old, tool="refund", operation="process", params=SMALL["params"], keys=jwks(app), now=app.clock())
    assert caught.value.reason == "expired" and caught.value.expired_at < app.clock()
    # Someone else's read shows the stored permit and renews nothing.
    assert get(app, k["approver"], action["id"])["permit"] == old
    fresh = get(app, k["agent"], action["id"])["permit"]
    assert fresh != old
    claims = verify_permit(fresh, tool="refund", operation="process", params=SMALL["params"], keys=jwks(app),
                           now=app.clock())  # fmt: skip
    assert claims.expires_at == int(app.clock()) + 300
    assert get(app, k["agent"], action["id"])["permit"] == fresh  # still fresh: not signed again
    renewals = [e for e in events(app, action["id"]) if e["event"] == "action.permit_renewed"]
    assert len(renewals) == 1
    assert renewals[0]["data"]["permit"]["sha256"] == hashlib.sha256(fresh.encode()).hexdigest()
    code, output = audit_verify(app.database_url)
    assert code == 0, output


def test_keys_come_from_a_jwks_file_a_pem_file_or_a_url(app: InProcessServer, tmp_path: Any) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    key_set = jwks(app)
    args = {"tool": "refund", "operation": "process", "params": SMALL["params"], "now": app.clock()}

    jwks_file = tmp_path / "keys.json"
    jwks_file.write_text(json.dumps(key_set))
    verify_permit(action["permit"], keys=jwks_file, **args)
    verify_permit(action["permit"], keys=str(jwks_file), **args)
    pem = Ed25519PublicKey.from_public_bytes(b64url(key_set["keys"][0]["x"])).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(pem)
    verify_permit(action["permit"], keys=pem_file, **args)

    served = json.dumps(key_set).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1/permits/keys"
        verify_permit(action["permit"], keys=url, **args)
        cached = PermitKeys.from_url(url)
        verify_permit(action["permit"], keys=cached, **args)
    finally:
        httpd.shutdown()
        httpd.server_close()
    verify_permit(action["permit"], keys=cached, **args)  # fetched once, kept
    from faramesh.permit import PermitKeysUnavailable

    with pytest.raises(PermitKeysUnavailable):
        verify_permit(action["permit"], keys=url, **args)  # nothing answers any more
    with pytest.raises(PermitKeysUnavailable):
        verify_permit(action["permit"], keys=tmp_path / "missing.json", **args)


def test_the_permit_module_imports_no_server_stack() -> None:
    import subprocess
    import sys

    code = "import sys, faramesh.permit; print(sorted(m for m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = run.stdout
    for heavy in ("fastapi", "sqlalchemy", "uvicorn", "starlette", "faramesh.server", "faramesh.storage"):
        assert f"'{heavy}'" not in loaded, heavy


@settings(max_examples=60, deadline=None)
@given(
    tool=st.text(min_size=1, max_size=20),
    approvers=st.lists(st.text(max_size=8), max_size=3),
    kid=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=43),
)
def test_a_permit_is_byte_for_byte_what_joserfc_serializes(tool: str, approvers: list[str], kid: str) -> None:
    """`encode_permit` joins the compact JWS itself (the signature is per allowed submit);
    it must stay exactly joserfc's compact serialization, and read back through it."""
    from joserfc import jws
    from joserfc.jwk import OKPKey

    from faramesh.canonical import fast_canonical
    from faramesh.permit import _REGISTRY, ALG, PermitClaims, encode_permit, read_permit

    key = OKPKey.generate_key("Ed25519", private=True)
    claims = PermitClaims(
        action_id="01JACTION",
        tool=tool,
        operation="process",
        request_hash="a" * 64,
        params_hash="b" * 64,
        policy_hash="c" * 64,
        approvers=tuple(approvers),
        agent_id="bot",
        status="allowed",
        issued_at=1_800_000_000,
        expires_at=1_800_000_300,
        kid=kid,
    )
    permit = encode_permit(claims, key)
    header = {"alg": ALG, "kid": kid, "typ": "JWT"}
    assert permit == jws.serialize_compact(header, fast_canonical(claims.to_payload()), key, registry=_REGISTRY)
    assert jws.deserialize_compact(permit, key, registry=_REGISTRY).payload == fast_canonical(claims.to_payload())
    assert read_permit(permit) == claims
    with pytest.raises(ValueError, match="private key"):
        encode_permit(claims, OKPKey.import_key(key.as_dict(private=False)))
