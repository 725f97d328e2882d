"""Audit test helpers: real databases (a SQLite file, a fresh PostgreSQL database) filled
with a real history by the real service, and SQL to tamper with them afterwards."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from faramesh.cli.main import main
from faramesh.model import Identity, Role
from faramesh.policy import Policy
from faramesh.service import Governor, Submission
from faramesh.service import keys as service_keys
from faramesh.storage import Store, normalize_url
from tests.inprocess import IN_PROCESS_SECRET

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_HOST = os.environ.get("FARAMESH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")

POLICY = """
rules:
  - id: huge-refunds
    match: {tool: refund, operation: process, amount_gt: 1000}
    require_approval: true
    approval: {quorum: 2}
    reason: Huge refunds need two approvers
    risk: critical
  - id: large-refunds
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
    reason: Large refunds need approval
    risk: high
  - id: small-refunds
    match: {tool: refund, operation: process, amount_lte: 100}
    allow: true
    reason: Small refunds allowed
    risk: low
  - id: no-deletes
    match: {tool: user_management, operation: delete}
    deny: true
    reason: Agents may not delete users
    risk: critical
"""

RELOADED_POLICY = POLICY.replace("amount_gt: 100}", "amount_gt: 200}")


# -- PostgreSQL ------------------------------------------------------------------------


def _pg_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(f"{PG_HOST}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_HOST}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def pg_create(template: str | None = None) -> str:
    """A new, empty (or cloned) database; returns its URL."""
    from psycopg import sql

    name = f"faramesh_test_{secrets.token_hex(6)}"
    with _pg_admin() as admin:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        admin.execute(statement)
    return f"{PG_HOST}/{name}"


def pg_drop(url: str) -> None:
    from psycopg import sql

    name = url.rsplit("/", 1)[1]
    with _pg_admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def pg_database(template: str | None = None) -> Iterator[str]:
    url = pg_create(template)
    try:
        yield url
    finally:
        pg_drop(url)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module."""
    with pg_database() as url:
        yield url


# -- a real history --------------------------------------------------------------------


@dataclass
class History:
    """Named actions and keys of a populated database."""

    actions: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def _identity(store: Store, role: Role, name: str, groups: tuple[str, ...] = ()) -> Identity:
    info, _ = service_keys.create_key(store, role=role, name=name, groups=groups, actor="test")
    return info.identity()


class SkippingClock:
    """The real time, plus the waits skipped so far: records keep their real order and
    spacing (tests slice the log by time), and an approval window passes without a sleep."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += seconds


def populate(url: str) -> History:
    """Every kind of state change, through the real service, into the database at `url`."""
    store = Store(url)
    store.upgrade()
    history = History()
    try:
        clock = SkippingClock()  # the expiry below skips its second instead of sleeping
        gov = Governor(store, Policy.from_yaml(POLICY), clock=clock, secret_key=IN_PROCESS_SECRET)
        # A second governor on the same database whose approvals expire after 1 s.
        hasty = Governor(
            store, Policy.from_yaml(POLICY), approval_timeout=1.0, clock=clock, secret_key=IN_PROCESS_SECRET
        )
        agent = _identity(store, Role.AGENT, "billing bot")
        alice = _identity(store, Role.APPROVER, "alice")
        bob = _identity(store, Role.APPROVER, "bob")
        spare = _identity(store, Role.AGENT, "spare")
        history.keys.update(agent=agent.key_id, alice=alice.key_id, bob=bob.key_id, spare=spare.key_id)
        service_keys.revoke_key(store, spare.key_id, actor="test")

        def submit(tool: str, operation: str, via: Governor = gov, **params: Any) -> str:
            ctx = {"agent_id": "billing-bot", "note": "café ☕"}
            return str(via.submit(agent, Submission(tool, operation, params, ctx, reattach=False))["id"])

        expiring = submit("refund", "process", via=hasty, amount=300, customer_id="cus_exp")
        allowed = submit("refund", "process", amount=42.5, customer_id="cus_1")
        gov.report_result(agent, allowed, success=True, result={"refund_id": "re_1", "amount": 42.5})
        history.actions["denied_by_policy"] = submit("user_management", "delete", user_id="u_9")
        approved = submit("refund", "process", amount=500, customer_id="cus_2")
        gov.approve(alice, approved, reason="checked the ticket")
        gov.report_result(agent, approved, success=False, error="card declined")
        denied = submit("refund", "process", amount=700, customer_id="cus_3")
        gov.deny(bob, denied, reason="duplicate")
        gov.set_policy(Policy.from_yaml(RELOADED_POLICY), actor="test", source="reloaded.yaml")
        huge = submit("refund", "process", amount=5000, customer_id="cus_4")
        gov.approve(alice, huge)
        gov.approve(bob, huge)
        history.actions["pending"] = submit("refund", "process", amount=900, customer_id="cus_5")
        history.actions.update(allowed=allowed, approved=approved, denied=denied, huge=huge, expiring=expiring)
        # The hasty action's approval window (1 s) passes, then the sweep denies it, and
        # only it: every other pending action has the default window.
        clock.skip(1.05)
        assert gov.expire_due() == 1, "the action did not expire"
    finally:
        store.close()
    return history


# -- SQLite and PostgreSQL databases holding that history ------------------------------


@dataclass
class Database:
    url: str
    backend: str
    history: History
    engine: Engine

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []

    def one(self, statement: str, **params: Any) -> Any:
        rows = self.sql(statement, **params)
        assert len(rows) == 1, rows
        return rows[0]

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), env={"FARAMESH_DATABASE_URL": self.url}, catch_exceptions=False)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, History]:
    path = tmp_path_factory.mktemp("audit-template") / "template.db"
    history = populate(f"sqlite:///{path}")
    return path, history


@pytest.fixture(scope="module")
def pg_template() -> Iterator[tuple[str, History]]:
    with pg_database() as url:
        history = populate(url)
        yield url.rsplit("/", 1)[1], history


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A copy of the populated database, for one test to tamper with."""
    if request.param == "sqlite":
        template, history = request.getfixturevalue("sqlite_template")
        path = tmp_path / "faramesh.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
        engine = create_engine(url)
        yield Database(url, "sqlite", history, engine)
        engine.dispose()
    else:
        name, history = request.getfixturevalue("pg_template")
        with pg_database(template=name) as url:
            engine = create_engine(normalize_url(url))
            yield Database(url, "postgresql", history, engine)
            engine.dispose()


CliRun = Callable[..., Result]
