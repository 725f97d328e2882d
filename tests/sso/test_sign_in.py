"""Signing in to the dashboard with OpenID Connect against the test provider on loopback:
the happy path, and every answer that must be refused (wrong state, a replayed code,
wrong nonce, wrong audience, an expired token, an unknown key id until the provider
rotates its keys, a person in no mapped group, a forged callback)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from faramesh import audit
from faramesh.config import Settings
from faramesh.model import person_id
from faramesh.sso import SsoConfig, SsoConfigError
from faramesh.storage import people_repo
from tests.inprocess import InProcessServer
from tests.sso.conftest import callback_path, query_of, sign_in, start_sign_in, web_client
from tests.sso.provider import CLIENT_ID, Provider


def signed_in(client: httpx.Client) -> bool:
    """Whether the browser's session opens the queue (else it is sent to /login)."""
    r = client.get("/")
    assert r.status_code in (200, 303), r.text
    return r.status_code == 200


def audit_events(app: InProcessServer, event: str) -> list[Any]:
    records = app.governor.store.read(lambda conn: audit.events_after(conn, 0, 10_000))
    return [r for r in records if r.event == event]


def test_sign_in_with_pkce_state_and_nonce_opens_a_session_naming_the_person(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = web_client(app)
    assert not signed_in(client)
    login = client.get("/login")
    assert 'href="/login/oidc"' in login.text and "Sign in with single sign-on" in login.text

    authorize = start_sign_in(client, nxt="/history")
    assert authorize.startswith(provider.issuer + "/authorize?")
    q = query_of(authorize)
    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["state"] and q["nonce"] and q["state"] != q["nonce"]
    assert q["redirect_uri"] == "http://testserver/login/oidc/callback"
    assert set(q["scope"].split()) == {"openid", "email", "profile"}

    back = provider.authorize_url_answer(authorize, "alice")
    r = client.get(callback_path(back))
    assert r.status_code == 200
    # A page that moves on by itself, so the new SameSite=Strict cookie is sent with it.
    assert '<meta http-equiv="refresh" content="0;url=/history">' in r.text
    assert "faramesh_session=" in r.headers.get("set-cookie", "")
    assert 'faramesh_sso=""' in r.headers.get("set-cookie", "")  # the sign-in cookie is spent

    queue = client.get("/")
    assert queue.status_code == 200
    assert "Alice Example" in queue.text and "alice@example.com" in queue.text
    assert 'title="person:alice@example.com (Alice Example)"' in queue.text
    assert ">approver<" in queue.text

    (record,) = audit_events(app, "person.signed_in")
    assert record.actor == "person:alice@example.com (Alice Example)"
    assert record.data["person"] == {
        "issuer": provider.issuer,
        "subject": "u-alice",
        "email": "alice@example.com",
        "name": "Alice Example",
    }
    assert record.data["role"] == "approver"
    assert record.data["groups"] == ["faramesh-approvers", "finance"]


def test_admin_group_signs_in_as_admin(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = sign_in(app, provider, "carol")
    assert client.get("/admin/keys").status_code == 200


def test_groups_only_in_userinfo_are_read_from_userinfo(sso_app: Any, provider: Provider) -> None:
    provider.groups_in_id_token = False
    app = sso_app()
    client = sign_in(app, provider, "alice")
    assert signed_in(client)
    assert ("GET", "/userinfo") in provider.log


def refused(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert text in r.text, r.text
    assert "faramesh_session=" not in r.headers.get("set-cookie", "") or "Signed in" not in r.text


def test_wrong_state_is_refused(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), "alice")
    q = query_of(back)
    r = client.get("/login/oidc/callback", params={"code": q["code"], "state": q["state"] + "x"})
    refused(r, 400, "does not belong to the sign-in this browser started")
    assert ("POST", "/token") not in provider.log  # the code was never exchanged
    assert not signed_in(client)


def test_forged_callback_is_refused(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    # Someone else's code, delivered to a browser that started no sign-in (login CSRF).
    attacker = web_client(app)
    forged = provider.authorize_url_answer(start_sign_in(attacker), "dave")
    victim = web_client(app)
    refused(victim.get(callback_path(forged)), 400, "no sign-in in progress")
    # The same code injected with the victim's own state: the PKCE verifier does not match.
    victim_state = query_of(provider.authorize_url_answer(start_sign_in(victim), "alice"))["state"]
    injected = {"code": query_of(forged)["code"], "state": victim_state}
    refused(victim.get("/login/oidc/callback", params=injected), 403, "PKCE")
    assert not signed_in(victim)
    assert not audit_events(app, "person.signed_in")


def test_replayed_code_is_refused(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), "alice")
    assert client.get(callback_path(back)).status_code == 200
    # The same answer again in the same browser: its sign-in cookie was spent.
    refused(client.get(callback_path(back)), 400, "no sign-in in progress")
    # Replayed from another browser with a sign-in of its own: the provider refuses the code.
    other = web_client(app)
    state = query_of(start_sign_in(other))["state"]
    r = other.get("/login/oidc/callback", params={"code": query_of(back)["code"], "state": state})
    refused(r, 403, "invalid_grant")
    assert not signed_in(other)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        ({"nonce": "not-the-nonce-we-sent"}, "nonce"),
        ({"aud": "some-other-client"}, "aud"),
        ({"iss": "http://127.0.0.1:1"}, "iss"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "exp"),
    ],
    ids=["wrong-nonce", "wrong-aud", "wrong-iss", "expired"],
)
def test_invalid_id_token_is_refused(sso_app: Any, provider: Provider, tamper: dict[str, Any], why: str) -> None:
    app = sso_app()
    client = web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), "alice")
    provider.tamper_next = dict(tamper)
    r = client.get(callback_path(back))
    refused(r, 403, "the ID token is not valid")
    assert why in r.text
    assert not signed_in(client)
    assert not audit_events(app, "person.signed_in")


def test_unknown_key_id_is_refused_until_the_provider_rotates_to_it(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    assert signed_in(sign_in(app, provider, "bob"))  # the provider's first key is now cached
    fetched = provider.log.count(("GET", "/jwks"))

    client = web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), "alice")
    provider.tamper_next = {"unpublished_key": True}  # signed with a key the JWKS does not list
    refused(client.get(callback_path(back)), 403, "the ID token is not valid")
    assert provider.log.count(("GET", "/jwks")) == fetched + 1  # it looked again before refusing

    provider.rotate()  # a new signing key, not yet seen by the app
    assert signed_in(sign_in(app, provider, "alice"))
    assert provider.log.count(("GET", "/jwks")) == fetched + 2


def test_person_in_no_mapped_group_is_refused_with_a_clear_page(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), "dave")
    r = client.get(callback_path(back))
    refused(r, 403, "No access to Faramesh")
    assert "dave@example.com" in r.text and "not a member of any group that may use Faramesh" in r.text
    assert not signed_in(client)
    row = app.governor.store.read(lambda conn: people_repo.get_person(conn, person_id(provider.issuer, "u-dave")))
    assert row is not None and row.role is None


def test_email_domains_need_a_verified_email_in_them(sso_app: Any, provider: Provider) -> None:
    app = sso_app(oidc_email_domains="example.com")
    assert signed_in(sign_in(app, provider, "alice"))
    for name, text in (("erin", "limited to verified email addresses at example.com"),):
        client = web_client(app)
        back = provider.authorize_url_answer(start_sign_in(client), name)
        refused(client.get(callback_path(back)), 403, text)
    provider.users["bob"].email_verified = False
    client = web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), "bob")
    refused(client.get(callback_path(back)), 403, "verified email")


def test_provider_error_answer_is_shown(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    client = web_client(app)
    state = query_of(start_sign_in(client))["state"]
    r = client.get("/login/oidc/callback", params={"state": state, "error": "access_denied", "error_description": "no"})
    refused(r, 403, "refused the sign-in: access_denied")


def test_issuer_that_names_itself_differently_is_refused(sso_app: Any, provider: Provider) -> None:
    app = sso_app(oidc_issuer=f"http://localhost:{provider.port}")  # the provider says 127.0.0.1
    r = web_client(app).get("/login/oidc")
    assert r.status_code == 502
    assert "calls itself" in r.text


def test_unreachable_provider_is_a_503_page(sso_app: Any, provider: Provider) -> None:
    app = sso_app()
    provider.stop()
    r = web_client(app).get("/login/oidc")
    assert r.status_code == 503
    assert "could not reach" in r.text


def test_without_an_issuer_there_is_no_sign_in_route(make_client: Any) -> None:
    app = make_client()
    assert web_client(app).get("/login/oidc").status_code == 404
    assert "/login/oidc" not in web_client(app).get("/login").text


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"oidc_issuer": "http://idp.example.com"}, "FARAMESH_OIDC_ISSUER"),
        ({"oidc_issuer": "ftp://idp.example.com"}, "FARAMESH_OIDC_ISSUER"),
        ({"oidc_issuer": "https://idp.example.com", "oidc_client_id": None}, "FARAMESH_OIDC_CLIENT_ID"),
        (
            {"oidc_issuer": "https://idp.example.com", "oidc_approver_groups": None, "oidc_admin_groups": None},
            "FARAMESH_OIDC_APPROVER_GROUPS",
        ),
        ({"oidc_issuer": "https://idp.example.com", "oidc_scopes": "email profile"}, "FARAMESH_OIDC_SCOPES"),
    ],
)
def test_unsafe_or_incomplete_settings_are_refused(settings: dict[str, Any], setting: str) -> None:
    base = {"oidc_client_id": "c", "oidc_approver_groups": "approvers"}
    with pytest.raises(SsoConfigError) as err:
        SsoConfig.from_settings(Settings(**(base | settings)))
    assert err.value.setting == setting


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080", "http://localhost:9000/realms/x", "http://[::1]:1"])
def test_http_issuer_is_accepted_on_loopback(issuer: str) -> None:
    config = SsoConfig.from_settings(Settings(oidc_issuer=issuer, oidc_client_id="c", oidc_admin_groups="a"))
    assert config is not None and config.loopback_http


def test_serve_refuses_to_start_on_an_http_issuer_elsewhere(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from faramesh.cli.main import main

    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--database-url",
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            "--oidc-issuer",
            "http://idp.example.com",
            "--oidc-client-id",
            "faramesh",
            "--oidc-approver-groups",
            "approvers",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "FARAMESH_OIDC_ISSUER" in result.output and "http is accepted only on loopback" in result.output
