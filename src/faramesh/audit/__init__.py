"""Tamper-evident audit log: an append-only hash chain in the database.

Each record is hashed as SHA-256(prev_hash || canonical(record)), where the record is
{seq, ts, event, action_id, actor, data}. Records are appended inside the same
transaction as the state change they describe, so one never exists without the other.

Where things are:
- records.py: what a record is (`AuditRecord`) and its canonical bytes
- chain.py: sealing, `append`, `head` and the record readers
- checkpoints.py: `Checkpoint` (a head noted down elsewhere) and `checkpoint`
- export.py: the exported JSON Lines format, written and parsed
- verify.py: `verify_database` and `verify_lines`; report.py: `VerifyReport`, `Problem`
- verify_chain.py: the hash and link walk; verify_state.py: actions and keys against their records
The SQL they run is in faramesh.storage.audit_log; the JSON encoding in faramesh.canonical.
"""

from faramesh.audit.chain import (
    action_events,
    append,
    chain_hash,
    event_at,
    events_after,
    head,
    record_hash,
    seal,
)
from faramesh.audit.checkpoints import Checkpoint, checkpoint, iso
from faramesh.audit.export import export, export_line, parse_export_line
from faramesh.audit.export import loads_exact as _loads_exact
from faramesh.audit.records import AuditRecord, ChainRow, record_body, record_bytes, row_to_record
from faramesh.audit.report import Problem, VerifyReport
from faramesh.audit.verify import verify_database, verify_lines
from faramesh.canonical import fast_canonical
from faramesh.storage.audit_log import GENESIS_HASH

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "ChainRow",
    "Checkpoint",
    "Problem",
    "VerifyReport",
    "_loads_exact",
    "action_events",
    "append",
    "chain_hash",
    "checkpoint",
    "event_at",
    "events_after",
    "export",
    "export_line",
    "fast_canonical",
    "head",
    "iso",
    "parse_export_line",
    "record_body",
    "record_bytes",
    "record_hash",
    "row_to_record",
    "seal",
    "verify_database",
    "verify_lines",
]
