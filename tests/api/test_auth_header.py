"""The API takes a key only from `Authorization: Bearer <key>` (docs/security.md).

An `X-API-Key` header used to be accepted too, undocumented; nothing depends on it
(the published faramesh-sdk and our SDK send Bearer), so it is refused like no key.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from faramesh.config import Settings
from faramesh.model import Role
from faramesh.server.app import create_app
from faramesh.service import keys as service_keys
from tests.conftest import SEED_POLICY


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    tmp = tmp_path_factory.mktemp("auth")
    settings = Settings(database_url=f"sqlite:///{tmp / 'f.db'}", policy=str(SEED_POLICY))
    with TestClient(create_app(settings)) as client:
        store = client.app.state.governor.store  # type: ignore[attr-defined]
        _, key = service_keys.create_key(store, role=Role.AGENT, name="agent", actor="test")
        yield client, key


def test_bearer_is_accepted(client_key: tuple[TestClient, str]) -> None:
    client, key = client_key
    assert client.get("/v1/actions", headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "{key}"},
        {"x-api-key": "{key}"},
        {"Authorization": "Token {key}", "X-API-Key": "{key}"},
        {"Authorization": "{key}"},
    ],
)
def test_a_key_anywhere_else_is_refused(client_key: tuple[TestClient, str], headers: dict[str, str]) -> None:
    client, key = client_key
    r = client.get("/v1/actions", headers={k: v.format(key=key) for k, v in headers.items()})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in r.json()["detail"]
    assert r.headers["WWW-Authenticate"] == "Bearer"
