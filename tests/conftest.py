"""Shared fixtures: the app in-process (`client`, `make_client`) or a real server process
(`server`, `start_server`) on a free port, each with a real database.

Prefer `client`: the real app over httpx in this process with a fake clock
(tests/inprocess.py). Use a server process only where the process matters: crashes and
signals, replicas, the browser, the CLI end to end, streams.

Tests in the directories named in BOTH_BACKENDS (and modules marked
`@pytest.mark.backends(...)`) run their `server` / `start_server` fixtures on SQLite
and on PostgreSQL; everything else uses a SQLite file. Each PostgreSQL database is
created for the test run and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from faramesh.storage import Store
from tests.inprocess import FakeClock, InProcessServer, inprocess_server

FIXTURES = Path(__file__).parent / "fixtures"
SEED_POLICY = FIXTURES / "seed_policy.yaml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The maintenance database used to create and drop one database per server fixture.
PG_ADMIN_URL = os.environ.get("FARAMESH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
BOTH_BACKENDS = ("api", "sdk", "storage")  # test directories whose servers run on both backends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run this module's server fixtures on these databases")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many workers `-n auto` (pyproject.toml) starts: two per CPU core, at most eight.

    Run one after another, the tests keep a core busy only about two thirds of the time
    (they wait on server processes starting, the browser, the network and real timers), so
    one worker per core would leave the cores idle a third of the time. Each worker holds
    its own servers and PostgreSQL connections; eight stays well inside PostgreSQL's
    default 100 connections. PYTEST_XDIST_AUTO_NUM_WORKERS still overrides this.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, 2 * cores)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        names = tuple(marker.args)
    elif Path(str(metafunc.definition.path)).parent.name in BOTH_BACKENDS:
        names = BACKENDS
    else:
        return
    metafunc.parametrize("backend", names, indirect=True, scope="module", ids=list(names))


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The database the server fixtures use: "sqlite" unless parametrized."""
    return str(getattr(request, "param", "sqlite"))


def require_postgres() -> None:
    """Skip (or, under CI, fail) when the test PostgreSQL server cannot be reached."""
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


def create_pg_database() -> str:
    """A new, empty PostgreSQL database; returns its URL."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    require_postgres()
    name = "faramesh_t_" + secrets.token_hex(6)
    with _pg_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    assert name and name.startswith("faramesh_t_"), name
    with _pg_admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path, name: str = "faramesh") -> Iterator[str]:
    """A new empty database of the given backend, removed afterwards; yields its URL."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'{name}.db'}"
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@contextlib.contextmanager
def migrated_store(backend: str, directory: Path) -> Iterator[Store]:
    """A `Store` on a fresh database of the given backend, migrated; closed afterwards."""
    with fresh_database(backend, directory) as url:
        store = Store(url)
        store.upgrade()
        try:
            yield store
        finally:
            store.close()


def free_port() -> int:
    """A free port that no other test (another xdist worker, another run) is handed soon.

    A plain bind-to-0-and-close leaves the port free for anyone until our server binds it,
    so two workers could pick the same one. Here the port is left in TIME_WAIT instead
    (its server side closes a connection first): bind(0) elsewhere skips it for about a
    minute, while a server that binds with SO_REUSEADDR, as uvicorn does, can take it.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _ = listener.accept()
            accepted.close()
    return port


def faramesh_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "faramesh.cli.main", *args]


@dataclass
class ServerProcess:
    """`faramesh serve` in a subprocess. Its output is kept and shown if it fails."""

    database_url: str
    policy: Path | None
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    admin_key: str | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        # A port picked here can still be lost to a process that binds it outside free_port();
        # then try another. A port the test chose (a restart on the same port) is kept.
        # The output is kept across tries: a first start that lost its port has already
        # created (and printed) the admin key in the database.
        chosen = bool(self.port)
        for _ in range(3):
            self.port = self.port if chosen else free_port()
            seen = len(self.output)
            if self._start(timeout):
                return self
            if chosen or "address already in use" not in "".join(self.output[seen:]):
                break
        raise RuntimeError("server did not start:\n" + "".join(self.output))

    def _start(self, timeout: float) -> bool:
        args = ["serve", "--port", str(self.port), "--database-url", self.database_url, *self.extra_args]
        if self.policy is not None:
            args += ["--policy", str(self.policy)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            faramesh_cmd(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        pump = threading.Thread(target=self._pump, daemon=True)
        pump.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    self._read_admin_key()
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        pump.join(timeout=5)  # the last lines tell why it stopped
        return False

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def _read_admin_key(self) -> None:
        for _ in range(100):
            text = "".join(self.output)
            match = re.search(r"^\s+(fm_\S+)\s*$", text, re.M)
            if match:
                self.admin_key = match.group(1)
                return
            if "Log in with an approver" in text:
                return
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # The same request methods as the in-process app (tests.inprocess.InProcessServer), so
    # helpers take either: paths are relative to the server.
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 10)
        return httpx.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def create_key(
        self, role: str, *, agent_id: str | None = None, groups: tuple[str, ...] = (), name: str = ""
    ) -> str:
        """A fresh key, created through the admin API."""
        assert self.admin_key, "no admin key"
        body: dict[str, Any] = {"role": role, "name": name or f"test {role}", "groups": list(groups)}
        if agent_id is not None:
            body["agent_id"] = agent_id
        r = httpx.post(
            self.url + "/v1/keys", json=body, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=10
        )
        r.raise_for_status()
        return str(r.json()["key"])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped, or failed under CI, without a server)."""
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def start_server(tmp_path: Path, backend: str) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []
    with contextlib.ExitStack() as databases:

        def _start(
            *,
            policy: Path | None = SEED_POLICY,
            database_url: str | None = None,
            extra_args: tuple[str, ...] = (),
            env: dict[str, str] | None = None,
        ) -> ServerProcess:
            db = database_url or databases.enter_context(fresh_database(backend, tmp_path, f"faramesh{len(servers)}"))
            server = ServerProcess(db, policy, extra_args, env or {}, cwd=tmp_path)
            servers.append(server)
            return server.start()

        try:
            yield _start
        finally:
            for server in servers:
                server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[ServerProcess]:
    """One server for a whole test module (cheaper); tests create their own keys."""
    tmp = tmp_path_factory.mktemp("server")
    with fresh_database(backend, tmp) as url:
        srv = ServerProcess(url, SEED_POLICY, cwd=tmp).start()
        try:
            yield srv
        finally:
            srv.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[InProcessServer]:
    """The app in this process for a whole test module, on the seed policy; tests create their own keys.

    Its clock is a FakeClock shared by the module's tests: `client.advance(seconds)`.
    """
    tmp = tmp_path_factory.mktemp("app")
    with fresh_database(backend, tmp) as url, inprocess_server(url, policy=SEED_POLICY) as srv:
        yield srv


@pytest.fixture
def make_client(tmp_path: Path, backend: str) -> Iterator[Callable[..., InProcessServer]]:
    """Start apps in this process with their own policy, settings and clock; each on a fresh database.

    `make_client(policy=path, clock=FakeClock(), approval_timeout=60, rate_limit=None, ...)`.
    """
    made: list[InProcessServer] = []
    with contextlib.ExitStack() as stack:

        def _make(
            *,
            policy: Path | None = SEED_POLICY,
            clock: FakeClock | None = None,
            database_url: str | None = None,
            **settings: Any,
        ) -> InProcessServer:
            url = database_url or stack.enter_context(fresh_database(backend, tmp_path, f"app{len(made)}"))
            made.append(stack.enter_context(inprocess_server(url, policy=policy, clock=clock, **settings)))
            return made[-1]

        yield _make
