"""`faramesh audit export` → `faramesh audit verify --file` round trips, slices,
tampered files, and checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from faramesh.canonical import canonical_json
from faramesh.cli.main import main
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.audit.conftest import Database

sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def export(db: Database, tmp_path: Path, *args: str) -> Path:
    out = tmp_path / f"export{len(list(tmp_path.glob('export*')))}.jsonl"
    result = db.cli("audit", "export", "--output", str(out), *args)
    assert result.exit_code == 0, result.output
    return out


def verify_file(path: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["audit", "verify", "--file", str(path), *args], catch_exceptions=False)
    return result.exit_code, result.output.splitlines()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_full_export_verifies_outside_the_database(db: Database, tmp_path: Path) -> None:
    path = export(db, tmp_path)
    seq, digest = db.one("SELECT seq, hash FROM audit_head")
    records = [json.loads(line) for line in lines_of(path)]
    assert [r["seq"] for r in records] == list(range(1, seq + 1))
    assert records[0]["prev_hash"] == "0" * 64 and records[-1]["hash"] == digest
    # One canonical JSON object per line, carrying its hashes.
    assert all(canonical_json(r) + b"\n" == line for r, line in zip(records, lines_of(path), strict=True))
    code, out = verify_file(path)
    assert code == 0, out
    assert out[0] == f"audit log intact: {seq} records, head seq {seq} hash {digest}"


def test_export_to_stdout_and_verify_from_stdin(db: Database) -> None:
    exported = db.cli("audit", "export")
    assert exported.exit_code == 0
    result = CliRunner().invoke(main, ["audit", "verify", "--file", "-"], input=exported.stdout_bytes)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit log intact: ")


@sqlite_only
def test_slice_since_seq_verifies_as_partial_and_against_its_checkpoint(db: Database, tmp_path: Path) -> None:
    ten = db.one("SELECT hash FROM audit_log WHERE seq = 10")[0]
    path = export(db, tmp_path, "--since", "10")
    assert [json.loads(line)["seq"] for line in lines_of(path)] == list(range(11, 22))
    code, out = verify_file(path)
    assert code == 1
    assert (
        out[0]
        == "audit chain broken at seq 1: records 1..10 are missing: the log starts at seq 11 — records were deleted"
    )
    code, out = verify_file(path, "--partial")
    assert code == 0, out
    assert "partial export: seq 11..21 checked from the prev_hash of its first record" in out[1]
    code, out = verify_file(path, "--partial", "--checkpoint", f"10:{ten}")
    assert code == 0, out
    code, out = verify_file(path, "--partial", "--checkpoint", f"10:{'0' * 64}")
    assert code == 1
    assert out[0].startswith("audit chain broken at seq 11 (action ")
    assert "its prev_hash differs from checkpoint 10:0000000000000000…" in out[0]


@sqlite_only
def test_slice_since_time(db: Database, tmp_path: Path) -> None:
    ts = db.one("SELECT ts FROM audit_log WHERE seq = 15")[0]
    when = datetime.fromtimestamp(ts, UTC).isoformat()
    path = export(db, tmp_path, "--since", when)
    assert [json.loads(line)["seq"] for line in lines_of(path)] == list(range(15, 22))
    assert verify_file(path, "--partial")[0] == 0


def test_slice_of_one_action_verifies_as_partial(db: Database, tmp_path: Path) -> None:
    aid = db.history.actions["huge"]
    path = export(db, tmp_path, "--action", aid)
    records = [json.loads(line) for line in lines_of(path)]
    assert [r["event"] for r in records] == ["action.submitted", "action.approval_recorded", "action.approved"]
    assert {r["action_id"] for r in records} == {aid}
    code, out = verify_file(path, "--partial")
    assert code == 0, out


@sqlite_only
def test_altered_line_is_named(db: Database, tmp_path: Path) -> None:
    path = export(db, tmp_path)
    lines = lines_of(path)
    index = next(i for i, line in enumerate(lines) if b'"action.approved"' in line)
    record = json.loads(lines[index])
    record["data"]["reason"] = "approved by the CFO"
    lines[index] = json.dumps(record).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    code, out = verify_file(path)
    assert code == 1
    assert out[0] == (
        f"audit chain broken at seq {record['seq']} (action {record['action_id']}): hash mismatch — record was altered"
    )


@sqlite_only
def test_deleted_line_is_named(db: Database, tmp_path: Path) -> None:
    path = export(db, tmp_path)
    lines = lines_of(path)
    del lines[6]  # seq 7
    path.write_bytes(b"".join(lines))
    code, out = verify_file(path)
    assert code == 1
    assert out[0] == "audit chain broken at seq 7: seq 7 missing before seq 8 — records were deleted"


@sqlite_only
def test_deleted_first_line_is_named(db: Database, tmp_path: Path) -> None:
    path = export(db, tmp_path)
    path.write_bytes(b"".join(lines_of(path)[1:]))
    code, out = verify_file(path)
    assert code == 1
    assert out[0] == "audit chain broken at seq 1: seq 1 is missing: the log starts at seq 2 — records were deleted"


@sqlite_only
def test_swapped_lines_are_named(db: Database, tmp_path: Path) -> None:
    path = export(db, tmp_path)
    lines = lines_of(path)
    lines[9], lines[10] = lines[10], lines[9]  # seq 10 and 11
    path.write_bytes(b"".join(lines))
    code, out = verify_file(path)
    assert code == 1
    late = json.loads(lines[10])
    assert out[0] == (
        f"audit chain broken at seq 10 (action {late['action_id']}): out of order: seq 10 follows seq 11 "
        "— records were reordered"
    )
    assert out[1].startswith("audit log NOT intact: 1 problem(s)")


@sqlite_only
def test_garbage_line_is_named(db: Database, tmp_path: Path) -> None:
    path = export(db, tmp_path)
    lines = lines_of(path)
    lines[4] = b'{"seq": "five"}\n'
    path.write_bytes(b"".join(lines))
    code, out = verify_file(path)
    assert code == 1
    assert "audit chain broken: line 5 is not an audit record: missing ts, event" in out[0]


def test_checkpoint_is_printed_and_still_proves_the_prefix_after_more_records(db: Database) -> None:
    seq, digest = db.one("SELECT seq, hash FROM audit_head")
    printed = db.cli("audit", "checkpoint")
    assert printed.exit_code == 0
    lines = printed.output.splitlines()
    assert lines[0] == f"seq:  {seq}" and lines[1] == f"hash: {digest}"
    assert lines[2].startswith("time: 20") and lines[2].endswith("Z")
    assert lines[3] == f"checkpoint: {seq}:{digest}"
    # The log grows; the old head is still in it.
    store = Store(db.url)
    try:
        service_keys.create_key(store, role="approver", name="later", actor="test")
    finally:
        store.close()
    result = db.cli("audit", "verify", "--checkpoint", f"{seq}:{digest}")
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[0].startswith(f"audit log intact: {seq + 1} records, head seq {seq + 1} ")
    assert out[-1] == f"checkpoint {seq}:{digest[:16]}… is in the log"


def test_wrong_checkpoint_is_named(db: Database) -> None:
    result = db.cli("audit", "verify", "--checkpoint", f"5:{'ab' * 32}")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "audit chain broken at seq 5: its hash differs from checkpoint 5:abababababababab… — the log was rewritten "
        "after the checkpoint"
    )


@sqlite_only
def test_checkpoint_json(db: Database) -> None:
    result = db.cli("audit", "checkpoint", "--json")
    data = json.loads(result.output)
    seq, digest = db.one("SELECT seq, hash FROM audit_head")
    assert (data["seq"], data["hash"], data["checkpoint"]) == (seq, digest, f"{seq}:{digest}")
    assert isinstance(data["ts"], float) and data["time"].endswith("Z")


def test_malformed_checkpoint_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["audit", "verify", "--checkpoint", "12"])
    assert result.exit_code == 2
    assert "SEQ:HASH" in result.output


def test_missing_database_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    for command in (["verify"], ["export"], ["checkpoint"]):
        result = CliRunner().invoke(main, ["audit", *command], env={"FARAMESH_DATABASE_URL": url})
        assert result.exit_code == 2, result.output
        assert "no database at" in result.output
    assert not (tmp_path / "nothing.db").exists()


def test_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", "export", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "neither a sequence number nor an ISO 8601 time" in result.output


def test_partial_needs_a_file() -> None:
    result = CliRunner().invoke(main, ["audit", "verify", "--partial"])
    assert result.exit_code == 2
    assert "--partial applies to --file" in result.output
