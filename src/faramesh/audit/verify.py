"""Verification entry points: the log in the database, or an exported JSON Lines file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from faramesh.audit.chain import head
from faramesh.audit.checkpoints import Checkpoint
from faramesh.audit.export import parse_export_line
from faramesh.audit.records import ChainRow
from faramesh.audit.report import Problem, VerifyReport
from faramesh.audit.verify_chain import check_chain
from faramesh.audit.verify_state import check_actions, check_keys, report_orphans
from faramesh.storage import audit_log
from faramesh.storage.audit_log import Connection


def verify_database(
    conn: Connection,
    *,
    checkpoints: Iterable[Checkpoint] = (),
    max_problems: int = 100,
    progress: Callable[[Iterable[ChainRow], int], Iterable[ChainRow]] | None = None,
) -> VerifyReport:
    """Verify the chain, the head, and every action and key against its records.

    Run it on a connection that has not started a transaction: everything is read in
    one snapshot (REPEATABLE READ on PostgreSQL; one read transaction on SQLite), so a
    server writing meanwhile does not make a consistent log look broken.
    `progress(rows, total)` may wrap the record stream, e.g. to show a progress bar.
    """
    conn = audit_log.snapshot(conn)
    report = VerifyReport(checkpoints=list(checkpoints), max_problems=max_problems)
    others: list[tuple[int, str, str]] = []  # records about no action: keys, policy, ...
    head_seq, head_hash = head(conn)
    rows: Iterable[ChainRow] = audit_log.stream_records(conn)
    if progress is not None:
        rows = progress(rows, head_seq)
    check_chain(
        rows,
        report,
        contiguous=True,
        locate=lambda digest: audit_log.seq_of_hash(conn, digest),
        others=others,
    )
    _check_head(report, head_seq, head_hash)
    joined = check_actions(conn, report)
    if joined < report.records - len(others):
        report_orphans(conn, report)
    check_keys(conn, report, [r for r in others if r[1].startswith("key.")])
    return report


def _check_head(report: VerifyReport, head_seq: int, head_hash: str) -> None:
    last = report.last_seq
    if last < head_seq:
        missing = f"seq {head_seq}" if head_seq == last + 1 else f"records {last + 1}..{head_seq}"
        report.add(
            Problem(
                last + 1,
                f"{missing} missing: the chain head says the log ends at seq {head_seq} — "
                "the last records were deleted",
            )
        )
    elif last > head_seq:
        report.add(
            Problem(
                head_seq + 1,
                f"records after seq {head_seq} are not in the chain head (the log ends at seq {last}) — "
                "records were added outside the service",
            )
        )
    elif report.last_hash != head_hash:
        report.add(Problem(last, "hash differs from the chain head's — the last record was replaced"))


def verify_lines(
    lines: Iterable[bytes],
    *,
    partial: bool = False,
    checkpoints: Iterable[Checkpoint] = (),
    max_problems: int = 100,
) -> VerifyReport:
    """Verify an exported file. A full export is checked from the genesis hash, without gaps;
    with `partial` (an export made with --since or --action) every record is checked
    against its own prev_hash and links are checked between adjacent records."""
    report = VerifyReport(checkpoints=list(checkpoints), max_problems=max_problems, anchored=not partial)

    def rows() -> Iterator[ChainRow]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield parse_export_line(line)
            except ValueError as exc:
                report.add(Problem(None, f"line {number} is not an audit record: {exc}", kind="file"))

    check_chain(rows(), report, contiguous=not partial)
    return report
