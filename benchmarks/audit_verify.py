"""Audit verification speed: `faramesh audit verify` over a large log.

Builds a database with N audit records and the actions, approvals and keys they
describe (bulk inserts through the same sealing code the service uses, not through
HTTP), then times a full verification: the hash chain, the head, and every action
and key against its records. Also times export and verification of the exported
JSON Lines file.

    python benchmarks/audit_verify.py [--records 1000000] [--database-url URL] [--json]
    python benchmarks/audit_verify.py --existing --database-url URL   # time an earlier build again
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from sqlalchemy import func, select, update

from benchmarks._common import dump_json, machine, print_table
from faramesh import audit
from faramesh.canonical import request_hash
from faramesh.storage import Store
from faramesh.storage.schema import GENESIS_HASH, actions, api_keys, approvals, audit_head, audit_log

POLICY_HASH = hashlib.sha256(b"benchmark policy").hexdigest()
AGENT = "key:0000000000000001 (bench agent)"
APPROVER = "key:0000000000000002 (bench approver)"

# (decision, risk, reason, rule_id, events after submit): a mix like a busy deployment.
PATTERNS: list[tuple[str, str, str, str | None, list[str]]] = [
    ("allow", "low", "Small refunds allowed", "rules[1]", ["action.succeeded"]),
    ("allow", "low", "Small refunds allowed", "rules[1]", ["action.failed"]),
    ("deny", "critical", "Agents may not delete users", "rules[2]", []),
    ("require_approval", "high", "Large refunds need approval", "rules[0]", ["action.approved", "action.succeeded"]),
    ("require_approval", "high", "Large refunds need approval", "rules[0]", ["action.denied"]),
    ("require_approval", "high", "Large refunds need approval", "rules[0]", ["action.expired"]),
]
STATUS_AFTER = {
    "action.succeeded": "succeeded",
    "action.failed": "failed",
    "action.approved": "approved",
    "action.denied": "denied",
    "action.expired": "denied",
}
SUBMIT_STATUS = {"allow": "allowed", "deny": "denied", "require_approval": "pending_approval"}


class Builder:
    """Appends sealed records and the rows they describe, in batches."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.prev = GENESIS_HASH
        self.seq = 0
        self.ts = 1_700_000_000.0
        self.records: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.approvals: list[dict[str, Any]] = []

    def record(self, event: str, actor: str, data: dict[str, Any], action_id: str | None = None) -> None:
        self.seq += 1
        self.ts += 0.001
        row = audit.seal(self.prev, seq=self.seq, ts=self.ts, event=event, action_id=action_id, actor=actor, data=data)
        self.prev = row["hash"]
        self.records.append(row)

    def action(self, n: int) -> None:
        decision, risk, reason, rule_id, later = PATTERNS[n % len(PATTERNS)]
        action_id = str(uuid.UUID(int=n + 1))
        params = {"amount": 50 + (n % 50000) / 100, "customer_id": f"cus_{n % 9973}", "currency": "usd"}
        context = {"agent_id": "billing-bot", "ticket": f"T-{n}"}
        rhash = request_hash(agent_id="billing-bot", tool="refund", operation="process", params=params, context=context)
        status = SUBMIT_STATUS[decision]
        submitted_ts = self.ts + 0.001
        self.record(
            "action.submitted",
            AGENT,
            {
                "status": status,
                "decision": decision,
                "rule_id": rule_id,
                "reason": reason,
                "risk": risk,
                "policy_hash": POLICY_HASH,
                "request_hash": rhash,
                "tool": "refund",
                "operation": "process",
                "agent_id": "billing-bot",
            },
            action_id,
        )
        result: Any = None
        error: str | None = None
        for event in later:
            status = STATUS_AFTER[event]
            if event in ("action.approved", "action.denied"):
                approve = event == "action.approved"
                data: dict[str, Any] = {
                    "status": status,
                    "approve": approve,
                    "reason": None,
                    "request_hash": rhash,
                    "approvals": 1 if approve else None,
                    "quorum": 1,
                }
                self.approvals.append(
                    {
                        "action_id": action_id,
                        "approver": "0000000000000002",
                        "approver_label": APPROVER,
                        "approve": approve,
                        "reason": None,
                        "request_hash": rhash,
                        "created_at": self.ts,
                    }
                )
                self.record(event, APPROVER, data, action_id)
            elif event == "action.expired":
                self.record(event, "system:expiry", {"status": status, "reason": "Approval expired"}, action_id)
            else:
                success = event == "action.succeeded"
                result = {"refund_id": f"re_{n}", "amount": 12.5} if success else None
                error = None if success else "card declined"
                data = {"status": status, "success": success, "result": result, "error": error}
                self.record(event, AGENT, data, action_id)
        self.actions.append(
            {
                "id": action_id,
                "status": status,
                "decision": decision,
                "reason": reason,
                "risk_level": risk,
                "rule_id": rule_id,
                "policy_hash": POLICY_HASH,
                "request_hash": rhash,
                "tool": "refund",
                "operation": "process",
                "params": orjson.dumps(params).decode(),
                "context": orjson.dumps(context).decode(),
                "agent_id": "billing-bot",
                "submitted_by": "0000000000000001",
                "result": orjson.dumps(result).decode() if result is not None else None,
                "error": error,
                "approval_quorum": 1,
                "version": 1 + len(later),
                "created_at": submitted_ts,
                "updated_at": self.ts,
            }
        )

    def flush(self) -> None:
        records, acts, votes = self.records, self.actions, self.approvals
        self.records, self.actions, self.approvals = [], [], []
        seq, digest = self.seq, self.prev

        def txn(conn: Any) -> None:
            if acts:
                conn.execute(actions.insert(), acts)
            if votes:
                conn.execute(approvals.insert(), votes)
            if records:
                conn.execute(audit_log.insert(), records)
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))

        self.store.write(txn)


def build(store: Store, n_records: int) -> tuple[int, int]:
    builder = Builder(store)
    builder.record(
        "key.created",
        "cli",
        {"key_id": "0000000000000001", "name": "bench agent", "role": "agent", "agent_id": None, "groups": []},
    )
    keys = [
        {
            "id": "0000000000000001",
            "name": "bench agent",
            "role": "agent",
            "agent_id": None,
            "groups": "[]",
            "key_hash": hashlib.sha256(b"bench").hexdigest(),
            "prefix": "fm_bench",
            "created_at": builder.ts,
            "revoked_at": None,
        }
    ]
    store.write(lambda conn: conn.execute(api_keys.insert(), keys))
    n_actions = 0
    while builder.seq < n_records:
        builder.action(n_actions)
        n_actions += 1
        if len(builder.records) >= 20_000:
            builder.flush()
    builder.flush()
    return builder.seq, n_actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="audit records to build (default 1000000)")
    parser.add_argument("--database-url", default=None, help="an empty database (default: a temporary SQLite file)")
    parser.add_argument(
        "--existing",
        action="store_true",
        help="time a database built earlier (--database-url) instead of building one",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.existing and not args.database_url:
        parser.error("--existing needs --database-url")

    tmp = Path(tempfile.mkdtemp(prefix="faramesh-audit-bench-"))
    url = args.database_url or f"sqlite:///{tmp / 'audit.db'}"
    store = Store(url)
    store.upgrade()
    started = time.perf_counter()
    if args.existing:
        with store.connect() as conn:
            records = audit.head(conn)[0]
            n_actions = int(conn.execute(select(func.count()).select_from(actions)).scalar_one())
    else:
        records, n_actions = build(store, args.records)
    build_s = time.perf_counter() - started

    started, cpu = time.perf_counter(), time.process_time()
    with store.connect() as conn:
        report = audit.verify_database(conn)
    verify_s, verify_cpu = time.perf_counter() - started, time.process_time() - cpu
    if not report.ok:
        for problem in report.problems[:10]:
            print(problem.line(), file=sys.stderr)
        raise SystemExit("the benchmark log did not verify")

    export_path = tmp / "export.jsonl"
    started = time.perf_counter()
    with store.connect() as conn, export_path.open("wb") as out:
        for line in audit.export(conn):
            out.write(line)
    export_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    with export_path.open("rb") as lines:
        file_report = audit.verify_lines(lines)
    file_s, file_cpu = time.perf_counter() - started, time.process_time() - cpu
    if not file_report.ok:
        raise SystemExit("the exported log did not verify")
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)

    results = {
        "records": records,
        "actions": n_actions,
        "backend": store.dialect,
        "build_seconds": round(build_s, 2),
        "verify_seconds": round(verify_s, 2),
        "verify_records_per_second": round(records / verify_s),
        "verify_cpu_seconds": round(verify_cpu, 2),
        "export_seconds": round(export_s, 2),
        "export_records_per_second": round(records / export_s),
        "verify_file_seconds": round(file_s, 2),
        "verify_file_records_per_second": round(records / file_s),
        "verify_file_cpu_seconds": round(file_cpu, 2),
        "machine": machine(),
    }
    if args.json:
        dump_json(results)
        return
    print_table(
        f"faramesh audit verify, {records:,} records, {n_actions:,} actions ({store.dialect})",
        ["step", "seconds", "CPU seconds", "records/s"],
        [
            [
                "verify database (chain + actions + keys)",
                f"{verify_s:.2f}",
                f"{verify_cpu:.2f}",
                f"{records / verify_s:,.0f}",
            ],
            ["export JSON Lines", f"{export_s:.2f}", "", f"{records / export_s:,.0f}"],
            ["verify exported file", f"{file_s:.2f}", f"{file_cpu:.2f}", f"{records / file_s:,.0f}"],
        ],
    )
    print(f"(built in {build_s:.1f} s)")


if __name__ == "__main__":
    main()
