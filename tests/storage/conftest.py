"""Fixtures of the repository contract (tests/storage/test_repository_contract_*.py) and
a fresh `Store` for the tests of its writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faramesh.storage import Store
from tests.conftest import migrated_store
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


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on a fresh database of the test's backend, closed afterwards."""
    with migrated_store(backend, tmp_path) as s:
        yield s
