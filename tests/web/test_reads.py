"""The reads the server and the dashboard make through faramesh.service_reads, and the one
replay of missed changes that the event streams share (faramesh.events), on real databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faramesh import service_reads
from faramesh.events import changes_after, published_type, replay_for
from faramesh.model import Identity
from faramesh.policy import Policy
from faramesh.service import Governor, Submission
from faramesh.service import keys as service_keys
from tests.conftest import migrated_store
from tests.inprocess import IN_PROCESS_SECRET

pytestmark = pytest.mark.backends("sqlite", "postgresql")

POLICY = Path(__file__).parent / "dashboard_policy.yaml"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gov(backend: str, tmp_path: Path) -> Iterator[Governor]:
    with migrated_store(backend, tmp_path) as store:
        governor = Governor(store, Policy.from_file(POLICY), clock=Clock(), secret_key=IN_PROCESS_SECRET)
        governor.signing_keys.ensure()  # as the app's start-up does: the key's record comes first
        yield governor


def new_key(g: Governor, role: str, **kw: Any) -> tuple[Identity, str]:
    info, secret = service_keys.create_key(g.store, role=role, name=role, **kw)
    return info.identity(), secret


def held(g: Governor, agent: Identity, amount: int = 500) -> dict[str, Any]:
    action = g.submit(
        agent, Submission(tool="refund", operation="process", params={"amount": amount}, context={}, reattach=False)
    )
    assert action["status"] == "pending_approval"
    return action


def test_keys_and_sessions_are_read_as_identities(gov: Governor) -> None:
    approver, approver_secret = new_key(gov, "approver", groups=("finance",))
    agent, agent_secret = new_key(gov, "agent", agent_id="bot")
    assert service_reads.authenticate(gov, approver_secret) == approver
    assert service_reads.authenticate(gov, agent_secret) == agent
    assert service_reads.authenticate(gov, "fm_not_a_key") is None
    # The dashboard takes only keys that may decide, and only while they are active.
    assert service_reads.dashboard_identity(gov, approver.key_id) == approver
    assert service_reads.dashboard_identity(gov, approver.key_id).groups == ("finance",)  # type: ignore[union-attr]
    assert service_reads.dashboard_identity(gov, agent.key_id) is None
    assert service_reads.dashboard_identity(gov, "no-such-key") is None
    gov.revoke_key(approver.key_id)
    assert service_reads.dashboard_identity(gov, approver.key_id) is None
    assert service_reads.authenticate(gov, approver_secret) is None


def test_pending_count_and_audit_position(gov: Governor) -> None:
    approver, _ = new_key(gov, "approver")
    agent, _ = new_key(gov, "agent")
    assert service_reads.pending_count(gov) == 0
    start = service_reads.audit_position(gov)
    first, second = held(gov, agent), held(gov, agent)
    gov.submit(agent, Submission(tool="refund", operation="process", params={"amount": 5}, context={}))  # allowed
    assert service_reads.pending_count(gov) == 2
    gov.approve(approver, first["id"], expected_hash=first["request_hash"])
    assert service_reads.pending_count(gov) == 1
    now = service_reads.audit_position(gov)
    assert now == start + 4
    record = service_reads.audit_event(gov, now)
    assert record is not None and record.event == "action.approved" and record.action_id == first["id"]
    assert service_reads.audit_event(gov, now + 1) is None
    assert second["id"] != first["id"]


def test_missed_changes_carry_the_published_names(gov: Governor) -> None:
    approver, _ = new_key(gov, "approver")
    agent, _ = new_key(gov, "agent")
    other, _ = new_key(gov, "agent")
    start = service_reads.audit_position(gov)
    mine = held(gov, agent)
    gov.set_policy(Policy.from_file(POLICY), actor="test")  # a record about no action
    theirs = held(gov, other)
    gov.approve(approver, mine["id"], expected_hash=mine["request_hash"])
    end = service_reads.audit_position(gov)

    assert published_type("action.submitted") == "action.created"
    assert published_type("action.approved") == "action.approved"
    assert [c.type for c in changes_after(gov.store, start, 10)] == [
        "action.created",
        "policy.reloaded",
        "action.created",
        "action.approved",
    ]

    seen = service_reads.missed_changes(gov, approver, start, limit=10)
    assert [(c.type, c.action_id) for c, _ in seen.changes] == [
        ("action.created", mine["id"]),
        ("action.created", theirs["id"]),
        ("action.approved", mine["id"]),
    ]
    assert seen.last == end and not seen.truncated
    # Each change comes with the action as it is now, as the caller may see it.
    assert all(a["id"] == c.action_id for c, a in seen.changes)
    assert seen.changes[0][1]["status"] == "approved"

    # An agent sees only its own actions; one action's stream only that action.
    assert [c.action_id for c, _ in replay_for(gov, agent, start, limit=10).changes] == [mine["id"], mine["id"]]
    only = service_reads.missed_changes(gov, approver, start, limit=10, action_id=theirs["id"])
    assert [c.type for c, _ in only.changes] == ["action.created"] and only.last == end

    # Too much missed: nothing (the page reloads), or the first `limit` when asked for.
    over = service_reads.missed_changes(gov, approver, start, limit=2)
    assert over.truncated and over.changes == [] and over.last == start
    first = service_reads.missed_changes(gov, approver, start, limit=2, keep_first=True)
    assert first.truncated and [c.seq for c, _ in first.changes] == [start + 1] and first.last == start + 2

    nothing = service_reads.missed_changes(gov, approver, end, limit=10)
    assert nothing.changes == [] and nothing.last == end and not nothing.truncated


class FailingReads:
    """The Governor's store, with an action read that fails as a lost database would."""

    def __init__(self, g: Governor) -> None:
        self.store = g.store

    def get(self, identity: Identity, action_id: str) -> dict[str, Any]:
        raise ConnectionError("the database went away")


def test_a_failed_read_is_not_silently_skipped(gov: Governor) -> None:
    approver, _ = new_key(gov, "approver")
    agent, _ = new_key(gov, "agent")
    start = service_reads.audit_position(gov)
    held(gov, agent)
    with pytest.raises(ConnectionError):
        replay_for(FailingReads(gov), approver, start, limit=10)
