"""What a permit costs: signing one (as submit does for every allowed action, once per
transition), the audit hash of it, verifying one offline (as the tool side does), and
the whole in-process submit of an allowed action with and without the signature.

    python benchmarks/permits.py [--n 5000] [--json]

End-to-end throughput before/after: run `benchmarks/submit.py` on this tree and on the
tree before permits (see docs/permits.md#overhead for the numbers and how they were taken).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import SEED_POLICY, dump_json, machine, print_table
from faramesh.model import Role, Status
from faramesh.permit import PermitKeys, verify_permit
from faramesh.policy import Policy
from faramesh.service import Governor, Submission, permits
from faramesh.service import keys as service_keys
from faramesh.storage import Store

PARAMS = {"amount": 50, "customer_id": "cus_1"}


def per_call_us(fn: Callable[[], Any], n: int, rounds: int = 5) -> float:
    """Median over `rounds` of the mean µs per call of `fn` over `n` calls."""
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        means.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="calls per round for the micro-benchmarks")
    parser.add_argument("--submits", type=int, default=2000, help="submits per round for the in-process submit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="faramesh-permits-bench-"))
    store = Store(f"sqlite:///{workdir / 'bench.db'}")
    store.upgrade()
    gov = Governor(store, Policy.from_file(SEED_POLICY), secret_key="benchmark secret")
    info, _ = service_keys.create_key(store, role=Role.AGENT, name="bench")
    agent = info.identity()
    try:
        gov.signing_keys.ensure()
        now = time.time()

        def sign() -> permits.Issued:
            return permits.issue(
                gov,
                action_id="3f8d3b9c-0d2f-4a51-9f7e-1b2c3d4e5f60",
                tool="refund",
                operation="process",
                params=PARAMS,
                request_hash="a" * 64,
                policy_hash="b" * 64,
                agent_id="billing-bot",
                status=Status.ALLOWED,
                approvers=(),
                now=now,
            )

        issued = sign()
        keys = PermitKeys.from_jwks(gov.permit_jwks())
        sign_us = per_call_us(sign, args.n)
        audit_us = per_call_us(issued.audit_data, args.n)
        verify_us = per_call_us(
            lambda: verify_permit(issued.permit, tool="refund", operation="process", params=PARAMS, keys=keys, now=now),
            args.n,
        )

        counter = iter(range(10**9))

        def submit() -> None:
            gov.submit(agent, Submission("refund", "process", PARAMS | {"n": next(counter)}, {}, reattach=False))

        real_issue = permits.issue

        def unsigned(*_: Any, **__: Any) -> None:
            return None

        # Alternate the two, round by round, so drift on a shared machine hits both alike.
        signed_rounds, unsigned_rounds = [], []
        for _ in range(5):
            signed_rounds.append(per_call_us(submit, args.submits, rounds=1))
            permits.issue = unsigned  # type: ignore[assignment]  # the same submit, no permit
            try:
                unsigned_rounds.append(per_call_us(submit, args.submits, rounds=1))
            finally:
                permits.issue = real_issue
        with_permit = statistics.median(signed_rounds)
        without_permit = statistics.median(unsigned_rounds)
    finally:
        store.close()

    results = {
        "sign_us": sign_us,
        "audit_hash_us": audit_us,
        "verify_us": verify_us,
        "permit_bytes": len(issued.permit),
        "submit_allowed_us": with_permit,
        "submit_allowed_unsigned_us": without_permit,
    }
    if args.json:
        dump_json({"machine": machine(), "results": results})
        return
    print_table(
        "Permit costs (µs per call, median of rounds; in-process, SQLite, durable writes)",
        ["what", "µs"],
        [
            ["sign a permit (claims, canonical JSON, Ed25519, compact JWS)", f"{sign_us:.1f}"],
            ["its audit data (SHA-256 of the permit)", f"{audit_us:.1f}"],
            ["verify a permit offline (signature, expiry, tool, arguments)", f"{verify_us:.1f}"],
            ["submit of an allowed action, with its permit", f"{with_permit:.0f}"],
            ["the same submit with signing skipped", f"{without_permit:.0f}"],
            ["permit size (bytes)", str(len(issued.permit))],
        ],
    )


if __name__ == "__main__":
    main()
