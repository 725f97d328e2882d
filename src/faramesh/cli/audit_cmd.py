"""`faramesh audit`: verify the hash chain, export it, and note checkpoints.

These commands read the database directly (FARAMESH_DATABASE_URL) and never write
to it, so they can run beside a live server or against a copy.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from faramesh.cli.common import database_option, echo_json, require_server, with_progress
from faramesh.cli.exitcodes import ExitCode
from faramesh.validation import parse_ascii_int

if TYPE_CHECKING:  # the audit package reads the database: imported inside the commands
    from faramesh import audit
    from faramesh.storage import Store

T = TypeVar("T")

EXIT_BROKEN = ExitCode.FAILED
EXIT_ERROR = ExitCode.USAGE


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_ERROR)


@contextlib.contextmanager
def _read_store(database_url: str, command: str) -> Iterator[Store]:
    """Open an existing database without migrating or creating anything."""
    require_server(f"audit {command}")
    from faramesh.storage.existing import DatabaseUnusable, open_existing

    try:
        with open_existing(database_url) as store:
            yield store
    except DatabaseUnusable as exc:
        _fail(str(exc))


def _checkpoint_arg(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[audit.Checkpoint]:
    if not values:
        return []
    require_server("audit verify")
    from faramesh.audit.checkpoints import Checkpoint

    try:
        return [Checkpoint.parse(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _since_arg(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | float | None:
    """SEQ (a number: records after it) or TIME (ISO 8601: records at or after it) -> int or float."""
    if value is None:
        return None
    text = value.strip()
    seq = parse_ascii_int(text)
    if seq is not None:
        return seq
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a sequence number nor an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Times are shown to the microsecond (rounded), so a record shown at TIME is included.
    return when.timestamp() - 0.5e-6


@click.group("audit")
def audit_group() -> None:
    """Verify, export and checkpoint the tamper-evident audit log."""


@audit_group.command("verify")
@click.option(
    "--file",
    "file",
    type=click.File("rb"),
    default=None,
    help="Verify an exported JSON Lines file (- for stdin) instead of the database.",
)
@click.option(
    "--partial",
    is_flag=True,
    help="The file is a slice (exported with --since or --action): check it from its first record's prev_hash "
    "and allow gaps between records.",
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    callback=_checkpoint_arg,
    metavar="SEQ:HASH",
    help="A head noted earlier (faramesh audit checkpoint); the log must still contain it. Repeatable.",
)
@click.option("--max-problems", default=100, show_default=True, type=click.IntRange(1), help="Problems to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@database_option
def verify(
    file: IO[bytes] | None,
    partial: bool,
    checkpoints: list[audit.Checkpoint],
    max_problems: int,
    as_json: bool,
    database_url: str,
) -> None:
    """Recompute the chain and check every action and key against its records.

    Exit 0 when the log is intact; exit 1 naming each record (seq, action) that was
    altered, deleted or reordered; exit 2 when the log cannot be read.
    """
    if partial and file is None:
        raise click.UsageError("--partial applies to --file")
    require_server("audit verify")
    from faramesh import audit
    from faramesh.storage.errors import DatabaseError, reason

    def track(rows: Iterable[T], total: int | None) -> Iterable[T]:
        return with_progress(rows, "Verifying the audit log", total)

    if file is not None:
        report = audit.verify_lines(
            with_progress(file, "Verifying the file", None),
            partial=partial,
            checkpoints=checkpoints,
            max_problems=max_problems,
        )
    else:
        with _read_store(database_url, "verify") as store, store.connect() as conn:
            try:
                report = audit.verify_database(conn, checkpoints=checkpoints, max_problems=max_problems, progress=track)
            except DatabaseError as exc:
                _fail(f"cannot read the audit log: {reason(exc)}")
    if as_json:
        echo_json(report.to_dict())
        sys.exit(0 if report.ok else EXIT_BROKEN)
    _print_report(report, source="file" if file is not None else "database")
    sys.exit(0 if report.ok else EXIT_BROKEN)


def _print_report(report: audit.VerifyReport, *, source: str) -> None:
    if not report.ok:
        for problem in report.problems:
            click.echo(problem.line())
        if report.omitted:
            click.echo(f"… and {report.omitted} more problem(s)")
        click.echo(report.summary())
        return
    click.echo(report.summary())
    if not report.anchored and report.records:
        click.echo(
            f"partial export: seq {report.first_seq}..{report.last_seq} checked from the prev_hash of its first "
            "record, not from the genesis hash"
        )
    if source == "database":
        click.echo(f"{report.actions} action(s) and {report.keys} key(s) match their records")
    for cp in report.checkpoints:
        click.echo(f"checkpoint {cp.seq}:{cp.hash[:16]}… is in the log")


@audit_group.command("export")
@click.option(
    "--since",
    callback=_since_arg,
    metavar="SEQ|TIME",
    default=None,
    help="Only records after sequence number SEQ, or at or after TIME (ISO 8601, UTC if no offset).",
)
@click.option("--action", "action_id", default=None, metavar="ID", help="Only the records of this action.")
@click.option(
    "--output", "-o", type=click.File("wb"), default="-", show_default=True, help="Write to this file (- is stdout)."
)
@database_option
def export(since: int | float | None, action_id: str | None, output: IO[bytes], database_url: str) -> None:
    """Write records as JSON Lines, one per line, with their hashes.

    The output can be shipped elsewhere and checked there with
    `faramesh audit verify --file` (add --partial for --since or --action slices).
    """
    since_seq = since if isinstance(since, int) else None
    since_ts = since if isinstance(since, float) else None
    with _read_store(database_url, "export") as store, store.connect() as conn:
        from faramesh import audit
        from faramesh.storage import audit_log
        from faramesh.storage.errors import DatabaseError, reason

        conn = audit_log.snapshot(conn)  # one consistent view of the log while it is written
        try:
            # How many records there are to write, when the filter allows knowing it cheaply.
            total = None
            if since_ts is None and action_id is None:
                total = max(0, audit.head(conn)[0] - (since_seq or 0))
            lines = audit.export(conn, since_seq=since_seq, since_ts=since_ts, action_id=action_id)
            for line in with_progress(lines, "Exporting the audit log", total):
                output.write(line)
        except DatabaseError as exc:
            _fail(f"cannot read the audit log: {reason(exc)}")
    output.flush()


@audit_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def checkpoint(as_json: bool, database_url: str) -> None:
    """Print the current head (sequence, hash, time) to keep somewhere else.

    Later, `faramesh audit verify --checkpoint SEQ:HASH` proves that the log still
    contains exactly that prefix.
    """
    with _read_store(database_url, "checkpoint") as store, store.connect() as conn:
        from faramesh import audit

        cp = audit.checkpoint(conn)
    if as_json:
        echo_json(cp.to_dict())
        return
    info: dict[str, Any] = cp.to_dict()
    click.echo(f"seq:  {cp.seq}")
    click.echo(f"hash: {cp.hash}")
    click.echo(f"time: {info['time'] or '-'}")
    click.echo(f"checkpoint: {cp}")
