"""A server running the approval-workflow policy, shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.approvals.support import POLICY
from tests.conftest import ServerProcess, fresh_database


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("approvals")
    with fresh_database(backend, tmp) as url:
        server = ServerProcess(url, POLICY, cwd=tmp).start()
        try:
            yield server
        finally:
            server.stop()
