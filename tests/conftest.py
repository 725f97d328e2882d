"""Shared fixtures: a real server process on a free port with a real SQLite file."""

from __future__ import annotations

import os
import re
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

FIXTURES = Path(__file__).parent / "fixtures"
SEED_POLICY = FIXTURES / "seed_policy.yaml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self.port = self.port or free_port()
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
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    self._read_admin_key()
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(self.output))

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
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def _start(
        *,
        policy: Path | None = SEED_POLICY,
        database_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> ServerProcess:
        db = database_url or f"sqlite:///{tmp_path / f'faramesh{len(servers)}.db'}"
        server = ServerProcess(db, policy, extra_args, env or {}, cwd=tmp_path).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a whole test module (cheaper); tests create their own keys."""
    tmp = tmp_path_factory.mktemp("server")
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", SEED_POLICY, cwd=tmp).start()
    yield srv
    srv.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
