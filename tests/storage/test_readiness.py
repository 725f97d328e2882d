"""`/ready` proves that a write reaches the database, not only that it answers a read.

The conditions are real, made outside the application:
- SQLite: the database file and its WAL made immutable (`chattr +i`; the tests run as
  root, which file permissions would not stop). Reads still work, every write fails,
  as on a file system remounted read-only.
- PostgreSQL: the database set to `default_transaction_read_only` and its sessions
  ended, so the server reconnects to read-only sessions, as after a failover to a
  standby.
The app runs in-process with its lifespan; the probe's cache follows the governor's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faramesh.config import Settings
from faramesh.model import Role
from faramesh.policy import Policy
from faramesh.server.app import create_app
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.conftest import SEED_POLICY, _pg_admin, auth, create_pg_database, drop_pg_database
from tests.inprocess import IN_PROCESS_SECRET


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def ready_app(url: str, clock: Clock) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    store = Store(url)
    store.upgrade()
    governor = Governor(store, Policy.from_file(SEED_POLICY), clock=clock, secret_key=IN_PROCESS_SECRET)
    _, agent = service_keys.create_key(store, role=Role.AGENT, name="agent", actor="test")
    app = create_app(Settings(database_url=url, policy=str(SEED_POLICY), policy_watch_interval=0), governor=governor)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                yield client, agent
    finally:
        store.close()


async def check_ready_follows_writes(
    client: httpx.AsyncClient,
    agent: str,
    clock: Clock,
    refuse_writes: Callable[[], None],
    allow_writes: Callable[[], None],
) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"

    refuse_writes()
    clock.now += 10  # past the cached result
    submit = await client.post(
        "/v1/actions", json={"tool": "refund", "operation": "process", "params": {"amount": 5}}, headers=auth(agent)
    )
    assert submit.status_code >= 500  # the condition is real: an ordinary write fails
    assert (await client.get("/health")).status_code == 200  # alive, just not ready
    r = await client.get("/ready")
    assert r.status_code == 503, r.text
    body: dict[str, Any] = r.json()
    assert body["detail"].startswith("database refuses writes")
    assert body["error"]["code"] == "unavailable" and body["error"]["check"] == "database_write"

    allow_writes()
    r = await client.get("/ready")
    assert r.status_code == 503  # the probe's result is kept for a moment: no write per request
    clock.now += 10
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    submit = await client.post(
        "/v1/actions", json={"tool": "refund", "operation": "process", "params": {"amount": 5}}, headers=auth(agent)
    )
    assert submit.status_code == 201


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[list[Path], bool], None]]:
    """Set or clear the immutable attribute; always cleared afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    touched: set[Path] = set()

    def set_flag(paths: list[Path], on: bool) -> None:
        done = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make files immutable here (needs root on ext4/xfs/btrfs): {done.stderr.strip()}")
        touched.update(paths)

    try:
        yield set_flag
    finally:
        if touched:
            subprocess.run(["chattr", "-i", *map(str, touched)], check=False)


def test_sqlite_ready_is_503_while_the_database_file_refuses_writes(
    tmp_path: Path, immutable: Callable[[list[Path], bool], None]
) -> None:
    db = tmp_path / "ready.db"
    clock = Clock()

    async def main() -> None:
        async with ready_app(f"sqlite:///{db}", clock) as (client, agent):
            # The -shm file stays writable: it is a shared memory map, not where data goes.
            files = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
            assert db in files
            await check_ready_follows_writes(
                client, agent, clock, lambda: immutable(files, True), lambda: immutable(files, False)
            )

    asyncio.run(main())


def test_postgresql_ready_is_503_on_a_read_only_database() -> None:
    url = create_pg_database()
    name = url.rsplit("/", 1)[1]
    clock = Clock()

    def set_read_only(on: bool) -> None:
        with _pg_admin() as conn:
            verb = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            conn.execute(f'ALTER DATABASE "{name}" {verb}')
            # Sessions keep the setting they started with; end them so the server reconnects.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    async def main() -> None:
        async with ready_app(url, clock) as (client, agent):
            await check_ready_follows_writes(
                client, agent, clock, lambda: set_read_only(True), lambda: set_read_only(False)
            )

    try:
        asyncio.run(main())
    finally:
        drop_pg_database(url)
