"""The policy source chosen at start is fixed: a reload never falls back to the starter policy.

Started without --policy in a directory with policy.yaml, the server serves that file for
its whole life. Renaming or removing it makes every reload (admin endpoint, SIGHUP, the
watcher) an error, and the last good policy keeps deciding. A server started with the
starter policy keeps it, even when a policy.yaml appears later. The app runs in-process
(lifespan included) on a real SQLite file; one test runs `faramesh serve` for SIGHUP.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from faramesh.config import Settings
from faramesh.model import Role
from faramesh.policy import load_starter_policy
from faramesh.server.app import create_app
from faramesh.server.policy_reload import SIGHUP_ACTOR, PolicyReloader
from faramesh.service import keys as service_keys
from tests.conftest import ServerProcess, auth

NO_REFUNDS = """
rules:
  - id: no-refunds
    match: {tool: refund}
    deny: true
    reason: Refunds are paused
"""
SHADOW = """
rules:
  - id: shadow-refunds
    match: {tool: refund}
    require_approval: true
"""
REFUND = {"tool": "refund", "operation": "process", "params": {"amount": 5}}


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, str, str]]:
    """The app with its lifespan running; yields a client, the app, an agent key and an admin key."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store = app.state.governor.store
        _, agent = service_keys.create_key(store, role=Role.AGENT, name="agent", actor="test")
        _, admin = service_keys.create_key(store, role=Role.ADMIN, name="admin", actor="test")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client, app, agent, admin


async def decide(client: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    r = await client.post("/v1/actions", json=REFUND, headers=auth(agent))
    assert r.status_code == 201, r.text
    return dict(r.json())


def settings_in(tmp_path: Path, **extra: Any) -> Settings:
    # No watcher task: the tests drive the reloader's poll themselves.
    return Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", policy_watch_interval=0, **extra)


def test_a_renamed_default_policy_file_is_an_error_not_the_starter_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yaml").write_text(NO_REFUNDS)

    async def main() -> None:
        async with running(settings_in(tmp_path)) as (client, app, agent, admin):
            first = await decide(client, agent)
            assert first["decision"] == "deny" and first["rule_id"] == "no-refunds"
            good = first["policy_hash"]
            (tmp_path / "policy.yaml").rename(tmp_path / "policy.yaml.bak")

            # the admin endpoint: 422 in the documented shape, naming the missing file
            r = await client.post("/v1/policy/reload", headers=auth(admin))
            assert r.status_code == 422, r.text
            body = r.json()
            assert body["error"]["field"] == "policy" and body["error"]["code"]
            assert "cannot read the policy file" in body["detail"] and "policy.yaml" in body["detail"]

            # SIGHUP and the watcher: logged, nothing applied
            reloader: PolicyReloader = app.state.policy_reloader
            reloader.reload_logged(SIGHUP_ACTOR)
            reloader.poll()
            reloader.poll()
            again = await decide(client, agent)
            assert again["decision"] == "deny" and again["policy_hash"] == good
            assert app.state.governor.policy.hash == good != load_starter_policy().hash

            # the same file back under its name is picked up again
            (tmp_path / "policy.yaml.bak").rename(tmp_path / "policy.yaml")
            r = await client.post("/v1/policy/reload", headers=auth(admin))
            assert r.status_code == 200 and r.json()["hash"] == good

    with caplog.at_level(logging.ERROR, logger="faramesh.policy"):
        asyncio.run(main())
    assert "cannot read the policy file" in caplog.text and "stays in force" in caplog.text


def test_the_policy_file_is_fixed_at_start_even_if_the_directory_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "policy.yaml").write_text(NO_REFUNDS)
    monkeypatch.chdir(here)

    async def main() -> None:
        async with running(settings_in(tmp_path)) as (client, app, agent, admin):
            good = app.state.governor.policy.hash
            monkeypatch.chdir(elsewhere)  # no policy.yaml here: a re-resolved path would mean the starter policy
            r = await client.post("/v1/policy/reload", headers=auth(admin))
            assert r.status_code == 200 and r.json()["hash"] == good
            assert r.json()["source"] == str(here / "policy.yaml")
            assert (await decide(client, agent))["decision"] == "deny"

    asyncio.run(main())


def test_a_server_started_with_the_starter_policy_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    starter = load_starter_policy()

    async def main() -> None:
        async with running(settings_in(tmp_path)) as (client, app, agent, admin):
            assert app.state.governor.policy.hash == starter.hash
            (tmp_path / "policy.yaml").write_text(NO_REFUNDS)  # appears after the start
            r = await client.post("/v1/policy/reload", headers=auth(admin))
            assert r.status_code == 200 and r.json()["hash"] == starter.hash
            reloader: PolicyReloader = app.state.policy_reloader
            assert not reloader.poll() and not reloader.poll()
            assert (await decide(client, agent))["decision"] == "allow"

    asyncio.run(main())


def test_a_missing_shadow_file_keeps_the_last_good_shadow_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    active, shadow = tmp_path / "active.yaml", tmp_path / "shadow.yaml"
    active.write_text(NO_REFUNDS)
    shadow.write_text(SHADOW)

    async def main() -> None:
        settings = settings_in(tmp_path, policy="active.yaml", shadow_policy="shadow.yaml")
        async with running(settings) as (client, app, agent, admin):
            good_shadow = app.state.governor.shadow_policy.hash
            shadow.rename(tmp_path / "shadow.yaml.bak")
            r = await client.post("/v1/policy/reload", headers=auth(admin))
            assert r.status_code == 200  # the active policy reloaded fine
            r = await client.get("/v1/policy", headers=auth(admin))
            described = r.json()["shadow"]
            assert described["hash"] == good_shadow and "cannot read the policy file" in described["rejected"][0]
            action = await decide(client, agent)
            assert action["shadow_decision"] == "require_approval" and action["shadow_policy_hash"] == good_shadow

    asyncio.run(main())


def test_sighup_after_renaming_the_default_policy_keeps_it(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    (tmp_path / "policy.yaml").write_text(NO_REFUNDS)  # the server runs in tmp_path, without --policy
    server = start_server(policy=None, extra_args=("--policy-watch-interval", "0.1"))
    agent = server.create_key("agent")

    def submit() -> dict[str, Any]:
        r = httpx.post(server.url + "/v1/actions", json=REFUND, headers=auth(agent), timeout=10)
        assert r.status_code == 201, r.text
        return dict(r.json())

    assert submit()["decision"] == "deny"
    (tmp_path / "policy.yaml").rename(tmp_path / "renamed.yaml")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "cannot read the policy file" not in "".join(server.output):
        assert time.monotonic() < deadline, "the rejected reload was not logged"
        time.sleep(0.1)
    r = httpx.post(server.url + "/v1/policy/reload", headers=auth(server.admin_key or ""), timeout=10)
    assert r.status_code == 422 and r.json()["error"]["field"] == "policy"
    assert submit()["decision"] == "deny"
    assert server.proc.poll() is None
