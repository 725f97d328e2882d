"""Fixtures of the repository contract (tests/storage/test_repository_contract_*.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.storage.contract import CONTRACT_BACKENDS, RepoBackend, open_backend


@pytest.fixture(scope="module", params=CONTRACT_BACKENDS)
def contract_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepoBackend]:
    """SQLite, PostgreSQL (skipped without a server, failed under CI) and memory, one
    database per test module."""
    with open_backend(str(request.param), tmp_path_factory.mktemp("contract")) as backend:
        yield backend


@pytest.fixture
def db(contract_backend: RepoBackend) -> RepoBackend:
    """The module's backend, emptied for this test: open transactions with `db.transaction()`."""
    contract_backend.empty()
    return contract_backend
