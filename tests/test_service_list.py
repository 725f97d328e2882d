"""list_actions time filters on a real SQLite file: rows stamped at known times."""

from __future__ import annotations

from pathlib import Path

from faramesh.policy import Policy
from faramesh.service import Governor, Submission
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.conftest import SEED_POLICY


def test_since_and_until_select_exactly_the_rows_in_range(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'list.db'}")
    store.upgrade()
    now = [1_000_000.0]
    gov = Governor(store, Policy.from_file(SEED_POLICY), clock=lambda: now[0])
    info, _ = service_keys.create_key(store, role="admin")
    admin = info.identity()
    stamped: dict[float, str] = {}
    for t in (1_000_000.0, 1_000_100.0, 1_000_200.0, 1_000_300.0, 1_000_400.0):
        now[0] = t
        action = gov.submit(admin, Submission(tool="refund", operation="process", params={"amount": 1}, context={}))
        stamped[t] = action["id"]
    try:

        def ids(**kw: float) -> list[str]:
            return [a["id"] for a in gov.list_actions(admin, limit=100, **kw)[0]]

        assert ids(until=1_000_200.0) == [stamped[1_000_100.0], stamped[1_000_000.0]]
        assert ids(until=1_000_200.5) == [stamped[1_000_200.0], stamped[1_000_100.0], stamped[1_000_000.0]]
        assert ids(since=1_000_300.0) == [stamped[1_000_400.0], stamped[1_000_300.0]]
        assert ids(since=1_000_100.0, until=1_000_300.0) == [stamped[1_000_200.0], stamped[1_000_100.0]]
        assert ids(until=999_999.0) == []
        assert ids(since=2_000_000.0) == []
    finally:
        store.close()
