"""The policy file watcher applies a version only once two polls saw it unchanged and it compiles.

The reloader's poll is driven directly, one look at a time, with the file's content
set between looks: no watcher task and no sleeps. The governor runs on a real SQLite
file (a reload writes the audit log).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from faramesh import audit
from faramesh.config import Settings
from faramesh.policy import Effect, Policy
from faramesh.server.policy_reload import PolicyReloader
from faramesh.service import Governor
from faramesh.storage import Store

# The new version, written in place in two steps. The first step alone compiles and
# lets every shell operation run; the finished file allows only `shell status`.
HEAD = """
default: deny
rules:
  - id: reads
    match: {tool: "*", operation: read}
    allow: true
  - id: shell-status
    allow: true
    match:
      tool: shell
"""
TAIL = """      operation: status
"""
FULL_BEFORE = """
default: deny
rules:
  - id: no-shell
    match: {tool: shell}
    deny: true
  - id: reads
    match: {tool: "*", operation: read}
    allow: true
"""


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[PolicyReloader, Path]]:
    path = tmp_path / "policy.yaml"
    path.write_text(FULL_BEFORE)
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    store.upgrade()
    settings = Settings(database_url=store.url, policy=str(path), policy_watch_interval=0)
    governor = Governor(store, Policy.from_file(path))
    try:
        yield PolicyReloader(governor, settings), path
    finally:
        store.close()


def shell(reloader: PolicyReloader) -> Effect:
    return reloader.governor.policy.evaluate(tool="shell", operation="run").effect


def reloads(reloader: PolicyReloader) -> list[str]:
    records = reloader.governor.store.read(lambda conn: audit.events_after(conn, 0, 1000))
    return [rec.data["new_hash"] for rec in records if rec.event == "policy.reloaded"]


def put(path: Path, text: str, mtime_ns: int) -> None:
    """Write in place (not renamed), with a distinct modification time for each version."""
    with open(path, "w") as fh:
        fh.write(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_file_written_in_two_steps_is_applied_only_when_it_settles(
    watched: tuple[PolicyReloader, Path],
) -> None:
    reloader, path = watched
    start = reloader.governor.policy.hash
    assert shell(reloader) == Effect.DENY
    final = HEAD + TAIL

    put(path, HEAD, 1_000_000_000_000)  # first step: a half file that compiles and allows shell
    assert Policy.from_yaml(HEAD).evaluate(tool="shell", operation="run").effect == Effect.ALLOW
    assert reloader.poll() is False
    assert shell(reloader) == Effect.DENY and reloader.governor.policy.hash == start

    put(path, final, 2_000_000_000_000)  # second step, before the next look
    assert reloader.poll() is False  # a new version: seen once, not yet applied
    assert shell(reloader) == Effect.DENY

    assert reloader.poll() is True  # unchanged across two looks: applied
    assert reloader.governor.policy.hash == Policy.from_yaml(final).hash
    assert shell(reloader) == Effect.DENY  # the finished file allows only `shell status`
    assert reloads(reloader) == [Policy.from_yaml(final).hash]  # the half file was never in force

    assert reloader.poll() is False  # nothing new


def test_a_stable_file_that_does_not_compile_is_rejected_and_the_old_policy_stays(
    watched: tuple[PolicyReloader, Path],
) -> None:
    reloader, path = watched
    start = reloader.governor.policy.hash
    put(path, "rules:\n  - match: {tool: shell}\n    allow: tru\n", 3_000_000_000_000)
    assert reloader.poll() is False
    assert reloader.poll() is True  # settled: compiled, rejected
    assert reloader.governor.policy.hash == start and shell(reloader) == Effect.DENY
    assert reloads(reloader) == []


def test_only_the_same_mtime_size_and_content_count_as_settled(watched: tuple[PolicyReloader, Path]) -> None:
    reloader, path = watched
    start = reloader.governor.policy.hash
    put(path, HEAD, 4_000_000_000_000)
    assert reloader.poll() is False
    os.utime(path, ns=(5_000_000_000_000, 5_000_000_000_000))  # touched again: still being written
    assert reloader.poll() is False
    assert reloader.governor.policy.hash == start
    put(path, FULL_BEFORE, 6_000_000_000_000)  # back to the policy in force, new mtime
    assert reloader.poll() is False
    assert reloader.poll() is True  # settled on the same policy: applied, no change
    assert reloader.governor.policy.hash == start and reloads(reloader) == []


def test_a_file_missing_for_one_look_mid_rename_is_left_alone(watched: tuple[PolicyReloader, Path]) -> None:
    reloader, path = watched
    start = reloader.governor.policy.hash
    path.unlink()
    assert reloader.poll() is False
    put(path, FULL_BEFORE.replace("deny: true", "deny: true\n    reason: Shell is off"), 7_000_000_000_000)
    assert reloader.poll() is False
    assert reloader.governor.policy.hash == start
    assert reloader.poll() is True
    assert reloader.governor.policy.hash != start and shell(reloader) == Effect.DENY
