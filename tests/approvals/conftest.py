"""The approval-workflow policy, served in-process (`client`) or by a server process (`srv`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.approvals.support import POLICY
from tests.conftest import ServerProcess, fresh_database
from tests.inprocess import InProcessServer, inprocess_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("approvals")
    with fresh_database(backend, tmp) as url:
        server = ServerProcess(url, POLICY, cwd=tmp).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[InProcessServer]:
    """The app in-process on the approval policy, shared by a module; `client.clock` is fake."""
    tmp = tmp_path_factory.mktemp("approvals-app")
    with fresh_database(backend, tmp) as url, inprocess_server(url, policy=POLICY) as app:
        yield app
