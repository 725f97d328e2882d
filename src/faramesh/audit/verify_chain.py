"""Walking the chain: recompute every hash and every link, and name what does not match.

Each problem names the record (seq) and the likely cause: records deleted (a gap),
reordered (out of order, or a record that hashes correctly under another seq), altered
(a hash mismatch) or rewritten with new hashes (a broken link, a checkpoint that no
longer matches).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from faramesh.audit.chain import chain_hash
from faramesh.audit.checkpoints import Checkpoint
from faramesh.audit.records import ChainRow, record_bytes, record_text
from faramesh.audit.report import Problem, VerifyReport
from faramesh.storage.audit_log import GENESIS_HASH

_DIAGNOSES = 5  # at most this many "where did this record come from" lookups
_MAX_GAPS = 1000  # single missing records remembered, in case they turn up out of order

Locate = Callable[[str], int | None]


def check_chain(
    rows: Iterable[ChainRow],
    report: VerifyReport,
    *,
    contiguous: bool,
    locate: Locate | None = None,
    others: list[tuple[int, str, str]] | None = None,
) -> None:
    """Recompute every hash and every link; record problems in `report`.

    `contiguous`: the rows are the whole log, from seq 1 and the genesis hash, without
    gaps. Otherwise they are a slice: each record is checked against its own prev_hash,
    and links are checked wherever two records are adjacent.
    `locate(hash)`: the seq of the record with that hash, to tell a moved record from
    an altered one. `others` collects (seq, event, data) of the records about no action.
    """
    walk = _ChainWalk(report, contiguous=contiguous, locate=locate, others=others)
    for row in rows:
        walk.step(row)
    walk.finish()


class _ChainWalk:
    """The state carried from one record to the next."""

    def __init__(
        self,
        report: VerifyReport,
        *,
        contiguous: bool,
        locate: Locate | None,
        others: list[tuple[int, str, str]] | None,
    ) -> None:
        self.report = report
        self.contiguous = contiguous
        self.locate = locate
        self.others = others
        self.pending = {c.seq: c for c in report.checkpoints}  # checkpoints not yet met
        self.expected_prev: str | None = GENESIS_HASH if contiguous else None
        self.last_seq: int | None = None  # the previous record's seq
        self.high = 0  # the highest seq so far
        self.gaps: dict[int, Problem] = {}  # single missing records, until they turn up out of order
        self.explained = False  # the next record's link is already accounted for
        self.diagnoses = 0
        self.count = 0

    def step(self, row: ChainRow) -> None:
        seq, ts, event, action_id, actor, data_json, prev_hash, stored = row
        self.count += 1
        if action_id is None and self.others is not None:
            self.others.append((seq, event, data_json))
        link_explained = self._place(seq, action_id, prev_hash)
        try:
            computed = hashlib.sha256(
                (prev_hash + record_text(seq, ts, event, action_id, actor, data_json)).encode()
            ).hexdigest()
        except (ValueError, TypeError) as exc:
            self.report.add(Problem(seq, f"record cannot be encoded ({exc}) — record was altered", action_id))
            computed = ""
        hash_ok = computed == stored
        if not hash_ok and computed:
            self._altered(row)
        elif not link_explained and self.expected_prev is not None and prev_hash != self.expected_prev:
            self._broken_link(seq, action_id)
        cp = self.pending.pop(seq, None)
        if cp is not None and stored != cp.hash:
            self.report.add(_checkpoint_problem(seq, action_id, cp, "its hash"))
        if not hash_ok:
            self.explained = True  # its stored hash cannot be trusted to link the next one
        self.expected_prev = stored
        self.last_seq = seq
        self.high = max(self.high, seq)

    def _place(self, seq: int, action_id: str | None, prev_hash: str) -> bool:
        """Check where the record stands; return whether its link is already accounted for."""
        link_explained, self.explained = self.explained, False
        if self.last_seq is None:
            return self._first(seq, action_id, prev_hash) or link_explained
        if seq <= self.high:
            self._out_of_order(seq, action_id)
            self.explained = True
            return True
        if seq != self.high + 1:
            return self._gap(seq) or link_explained
        return link_explained

    def _first(self, seq: int, action_id: str | None, prev_hash: str) -> bool:
        self.report.first_seq = seq
        explained = False
        if self.contiguous and seq != 1:
            missing = "seq 1 is" if seq == 2 else f"records 1..{seq - 1} are"
            self.report.add(Problem(1, f"{missing} missing: the log starts at seq {seq} — records were deleted"))
            explained = True
        cp = self.pending.pop(seq - 1, None)
        if cp is not None and prev_hash != cp.hash:
            self.report.add(_checkpoint_problem(seq, action_id, cp, "its prev_hash"))
        return explained

    def _out_of_order(self, seq: int, action_id: str | None) -> None:
        late = self.gaps.pop(seq, None)
        if late is not None:
            self.report.withdraw(late)  # it was not missing, only out of place
        self.report.add(
            Problem(seq, f"out of order: seq {seq} follows seq {self.last_seq} — records were reordered", action_id)
        )

    def _gap(self, seq: int) -> bool:
        """Records are missing before `seq`; return whether that explains its link."""
        if not self.contiguous:
            self.expected_prev = None  # a gap in a slice: nothing to link to
            return False
        high = self.high
        missing = f"seq {high + 1}" if seq == high + 2 else f"records {high + 1}..{seq - 1}"
        gap = Problem(high + 1, f"{missing} missing before seq {seq} — records were deleted")
        self.report.add(gap)
        if seq == high + 2 and len(self.gaps) < _MAX_GAPS:
            self.gaps[high + 1] = gap
        return True

    def _altered(self, row: ChainRow) -> None:
        seq, action_id = row[0], row[3]
        moved_from = None
        if self.locate is not None and self.diagnoses < _DIAGNOSES:
            self.diagnoses += 1
            moved_from = _moved_from(self.locate, row)
        if moved_from is not None and moved_from != seq:
            self.report.add(
                Problem(seq, f"record was moved here from seq {moved_from} — records were reordered", action_id)
            )
        else:
            self.report.add(Problem(seq, "hash mismatch — record was altered", action_id))

    def _broken_link(self, seq: int, action_id: str | None) -> None:
        self.report.add(
            Problem(
                seq,
                f"prev_hash does not match the hash of seq {self.last_seq} — seq {self.last_seq} was rewritten "
                "with a new hash, or a record was inserted",
                action_id,
            )
        )

    def finish(self) -> None:
        report = self.report
        report.records = self.count
        if self.last_seq is not None:
            report.last_seq = self.last_seq
            report.last_hash = self.expected_prev or ""
        for cp in sorted(self.pending.values(), key=lambda c: c.seq):
            problem = self._unmet(cp)
            if problem is not None:
                report.add(problem)

    def _unmet(self, cp: Checkpoint) -> Problem | None:
        """The problem with a checkpoint no record matched (None: the genesis, rightly named)."""
        last_seq = self.last_seq
        if cp.seq == 0 and self.contiguous:
            if cp.hash == GENESIS_HASH:
                return None
            return Problem(0, f"checkpoint {cp} does not name the genesis hash", kind="checkpoint")
        if last_seq is None or cp.seq > last_seq:
            end = f"the log ends at seq {last_seq}" if last_seq is not None else "the log is empty"
            return Problem(
                cp.seq,
                f"checkpoint {cp.seq} is not in the log ({end}) — records were deleted since the checkpoint",
                kind="checkpoint",
            )
        return Problem(
            cp.seq,
            f"checkpoint {cp.seq} lies before the first record here (seq {self.report.first_seq}); "
            f"export from --since {cp.seq} or earlier to prove it",
            kind="checkpoint",
        )


def _checkpoint_problem(seq: int, action_id: str | None, cp: Checkpoint, what: str) -> Problem:
    return Problem(
        seq,
        f"{what} differs from checkpoint {cp.seq}:{cp.hash[:16]}… — the log was rewritten after the checkpoint",
        action_id,
        kind="checkpoint",
    )


def _moved_from(locate: Locate, row: ChainRow) -> int | None:
    """If this record's content hashes correctly under another seq, that seq."""
    _, ts, event, action_id, actor, data_json, prev_hash, stored = row
    before = locate(prev_hash) if prev_hash != GENESIS_HASH else 0
    if before is None:
        return None
    origin = before + 1
    body = record_bytes(seq=origin, ts=ts, event=event, action_id=action_id, actor=actor, data_json=data_json)
    return origin if chain_hash(prev_hash, body) == stored else None
