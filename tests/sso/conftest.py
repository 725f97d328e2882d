"""Single sign-on test fixtures: the test identity provider on loopback, an app pointed at
it, and a browser's part of the sign-in done over HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.inprocess import BASE_URL, InProcessServer
from tests.sso.provider import Provider, User
from tests.web.conftest import browser, page  # noqa: F401  (Chromium fixtures for test_browser.py)

SSO_POLICY = Path(__file__).parent / "policy.yaml"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def people() -> dict[str, User]:
    return {
        "alice": User("u-alice", "alice@example.com", "Alice Example", ["faramesh-approvers", "finance"]),
        "bob": User("u-bob", "bob@example.com", "Bob Example", ["faramesh-approvers"]),
        "carol": User("u-carol", "carol@example.com", "Carol Admin", ["faramesh-admins"]),
        "dave": User("u-dave", "dave@example.com", "Dave Nogroup", ["engineering"]),
        "erin": User("u-erin", "erin@elsewhere.test", "Erin Elsewhere", ["faramesh-approvers"]),
    }


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider(users=people()).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def sso_app(make_client: Callable[..., InProcessServer], provider: Provider) -> Callable[..., InProcessServer]:
    """`sso_app(**settings)`: the app in-process, signing people in at the test provider."""

    def _make(**settings: Any) -> InProcessServer:
        return make_client(policy=SSO_POLICY, rate_limit=None, **provider.settings(**settings))

    return _make


def web_client(app: InProcessServer) -> httpx.Client:
    """A cookie-keeping client that does not follow redirects (each step is checked)."""
    return httpx.Client(transport=app.transport, base_url=BASE_URL, follow_redirects=False, timeout=30)


def start_sign_in(client: httpx.Client, nxt: str | None = None) -> str:
    """GET /login/oidc: the provider's authorization URL it sends the browser to."""
    r = client.get("/login/oidc", params={"next": nxt} if nxt else None)
    assert r.status_code == 303, r.text
    location = str(r.headers["location"])
    return location


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def callback_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def sign_in(
    app: InProcessServer, provider: Provider, username: str, client: httpx.Client | None = None
) -> httpx.Client:
    """A browser that signed in as `username` (asserts the sign-in succeeded)."""
    client = client or web_client(app)
    back = provider.authorize_url_answer(start_sign_in(client), username)
    r = client.get(callback_path(back))
    assert r.status_code == 200, r.text
    assert "Signed in" in r.text
    return client


def csrf(client: httpx.Client, path: str = "/") -> str:
    shown = client.get(path)
    assert shown.status_code == 200, shown.text
    match = CSRF_RE.search(shown.text)
    assert match, "page has no CSRF field"
    return match.group(1)
