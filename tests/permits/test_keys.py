"""The permit signing keys: made on first start and kept encrypted under the server
secret (or a 0600 secret file), shared by replicas, rotated with `faramesh permits
rotate-key` while old permits keep verifying until they expire."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from faramesh.cli.main import main
from faramesh.permit import PermitUnknownKey, read_permit, verify_permit
from faramesh.service.permit_keys import PUBLISH_SLACK, RELOAD_INTERVAL, SECRET_FILE
from faramesh.storage import normalize_url
from tests.conftest import SEED_POLICY, ServerProcess
from tests.inprocess import IN_PROCESS_SECRET, InProcessServer, auth
from tests.permits.support import SMALL, audit_verify, jwks, keys, submit

TTL = 300


def rotate(database_url: str, secret: str = IN_PROCESS_SECRET, *args: str) -> Any:
    return CliRunner().invoke(
        main,
        ["permits", "rotate-key", "--database-url", database_url, *args],
        env={"FARAMESH_SECRET_KEY": secret},
    )


@pytest.mark.backends("sqlite", "postgresql")
def test_rotation_keeps_old_permits_verifying_until_they_expire_and_signs_new_ones_with_the_new_key(
    make_client: Any,
) -> None:
    app: InProcessServer = make_client()
    k = keys(app)
    before = submit(app, k["agent"], SMALL)
    old_kid = read_permit(before["permit"]).kid
    assert [key["kid"] for key in jwks(app)["keys"]] == [old_kid]

    result = rotate(app.database_url)
    assert result.exit_code == 0, result.output
    assert old_kid in result.output
    app.advance(RELOAD_INTERVAL)  # running servers pick the new key up within this
    after = submit(app, k["agent"], SMALL | {"params": {"amount": 60}})
    new_kid = read_permit(after["permit"]).kid
    assert new_kid != old_kid
    published = jwks(app)
    assert {key["kid"] for key in published["keys"]} == {old_kid, new_kid}
    args = {"tool": "refund", "operation": "process", "keys": published, "now": app.clock()}
    verify_permit(before["permit"], params=SMALL["params"], **args)  # the old permit still verifies
    verify_permit(after["permit"], params={"amount": 60}, **args)

    # Once every permit of the old key has expired, it is no longer published.
    app.advance(TTL + PUBLISH_SLACK + RELOAD_INTERVAL)
    assert [key["kid"] for key in jwks(app)["keys"]] == [new_kid]
    with pytest.raises(PermitUnknownKey):
        verify_permit(before["permit"], tool="refund", operation="process", params=SMALL["params"],
                      keys=jwks(app), now=read_permit(before["permit"]).issued_at)  # fmt: skip
    listed = CliRunner().invoke(main, ["permits", "keys", "--database-url", app.database_url])
    assert listed.exit_code == 0, listed.output
    # (The CLI reads the real clock, this app a fake one: only the signing key's state is certain here.)
    assert f"{new_kid}  signing" in listed.output and old_kid in listed.output
    code, output = audit_verify(app.database_url)
    assert code == 0, output


@pytest.mark.backends("sqlite", "postgresql")
def test_a_rotation_under_another_secret_is_refused_and_never_leaves_a_server_signing_unverifiable_permits(
    make_client: Any,
) -> None:
    app: InProcessServer = make_client()
    k = keys(app)
    submit(app, k["agent"], SMALL)
    refused = rotate(app.database_url, "some other secret")
    assert refused.exit_code != 0
    assert "another server secret" in refused.output
    forced = rotate(app.database_url, "some other secret", "--new-secret")
    assert forced.exit_code == 0, forced.output
    # This server still has the old secret: it cannot open the new key, so nothing it
    # allows goes out without a permit: the submit fails closed with 503.
    app.advance(RELOAD_INTERVAL)
    r = app.post("/v1/actions", json=SMALL | {"params": {"amount": 70}}, headers=auth(k["agent"]))
    assert r.status_code == 503, r.text
    assert "another server secret" in r.json()["detail"]
    listed = app.get("/v1/actions", params={"limit": 50}, headers=auth(app.admin_key)).json()["actions"]
    assert all(a["params"].get("amount") != 70 for a in listed)
    assert len(jwks(app)["keys"]) == 2  # the public keys are still served: earlier permits verify


def test_without_a_secret_the_key_is_sealed_under_a_0600_file_and_another_secret_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARAMESH_SECRET_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'faramesh.db'}"
    srv = ServerProcess(url, SEED_POLICY, cwd=tmp_path).start()
    try:
        agent = srv.create_key("agent")
        action = httpx.post(srv.url + "/v1/actions", json=SMALL, headers=auth(agent), timeout=10).json()
        published = httpx.get(srv.url + "/v1/permits/keys", timeout=10).json()
        verify_permit(action["permit"], tool="refund", operation="process", params=SMALL["params"], keys=published)
        assert "Permits signed with key" in "".join(srv.output)
    finally:
        srv.stop()
    secret_file = tmp_path / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        [(sealed, public)] = conn.execute(text("SELECT private_key, public_jwk FROM permit_keys")).all()
    engine.dispose()
    assert sealed.startswith("gAAAA") and '"d"' not in sealed  # a Fernet token, not the JWK
    assert '"d"' not in public

    # The same database with another secret: `serve` refuses before it listens.
    result = CliRunner().invoke(
        main,
        ["serve", "--database-url", url, "--policy", str(SEED_POLICY), "--port", "1"],
        env={"FARAMESH_SECRET_KEY": "not the secret the key was sealed with"},
    )
    assert result.exit_code == 2, result.output
    assert "Cannot sign permits" in result.output and "another server secret" in result.output


@pytest.mark.backends("postgresql")
def test_replicas_starting_together_make_one_key_and_publish_the_same_set(
    pg_url: str, start_server: Any, backend: str
) -> None:
    env = {"FARAMESH_SECRET_KEY": "shared by both replicas"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.map(lambda _: start_server(database_url=pg_url, env=env), range(2))
    set_a = httpx.get(a.url + "/v1/permits/keys", timeout=10).json()
    set_b = httpx.get(b.url + "/v1/permits/keys", timeout=10).json()
    assert set_a == set_b and len(set_a["keys"]) == 1
    admin = a.admin_key or b.admin_key
    assert admin
    r = httpx.post(a.url + "/v1/keys", json={"role": "agent"}, headers=auth(admin), timeout=10)
    agent = r.json()["key"]
    on_b = httpx.post(b.url + "/v1/actions", json=SMALL, headers=auth(agent), timeout=10).json()
    verify_permit(
        on_b["permit"], tool="refund", operation="process", params=SMALL["params"], keys=a.url + "/v1/permits/keys"
    )
