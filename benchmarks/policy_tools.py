"""How long the policy tools take: lint, prove and replay on policies and histories of growing size.

For each size N the policy has N rules over N/3 exact tools (an approval rule
on amount, a deny rule on context.env and an allow rule on amount per tool)
plus ten glob rules. `lint` runs every check; `prove` answers one claim about
every action (`=> not allow`) and one with a premise. `replay` re-decides N*10
stored actions written straight into a SQLite file (the server's schema, not
its HTTP path, which `submit.py` measures).

    python benchmarks/policy_tools.py            # a table
    python benchmarks/policy_tools.py --json     # machine-readable
    python benchmarks/policy_tools.py --sizes 30,300,3000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from benchmarks._common import machine
from faramesh.policy import Policy
from faramesh.policy.tooling import lint, prove, replay
from faramesh.storage import Store
from faramesh.storage.schema import actions


def make_policy(n: int, seed: int = 1) -> Policy:
    rnd = random.Random(seed)
    rules = []
    tools = max(1, n // 3)
    for i in range(n):
        tool = f"tool{i % tools}"
        if i % 3 == 0:
            rules.append(
                f"  - id: r{i}\n    match: {{tool: {tool}, amount_gt: {rnd.randint(1, 1000)}}}\n"
                "    require_approval: true\n    approval: {timeout: 1h}"
            )
        elif i % 3 == 1:
            rules.append(f"  - id: r{i}\n    match: {{tool: {tool}, context.env_eq: prod}}\n    deny: true")
        else:
            rules.append(
                f"  - id: r{i}\n    match: {{tool: {tool}, amount_lte: {rnd.randint(1, 1000)}}}\n    allow: true"
            )
    for g in range(10):
        rules.append(f'  - id: g{g}\n    match: {{tool: "svc{g}.*", operation: read}}\n    allow: true')
    return Policy.from_yaml("default: deny\nrules:\n" + "\n".join(rules) + "\n")


def make_history(path: Path, n: int, tools: int, seed: int = 2) -> str:
    url = f"sqlite:///{path}"
    store = Store(url)
    store.upgrade()
    rnd = random.Random(seed)
    now = time.time()
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "status": "allowed",
                "decision": rnd.choice(["allow", "deny", "require_approval"]),
                "reason": "r",
                "risk_level": "low",
                "rule_id": None,
                "policy_hash": "0" * 64,
                "request_hash": "0" * 64,
                "tool": f"tool{rnd.randrange(tools)}",
                "operation": "run",
                "params": orjson.dumps({"amount": rnd.randint(1, 1200)}).decode(),
                "context": orjson.dumps({"env": rnd.choice(["prod", "dev"])}).decode(),
                "agent_id": "bot",
                "submitted_by": "k",
                "approval_quorum": 1,
                "version": 1,
                "created_at": now - (n - i),
                "updated_at": now - (n - i),
            }
        )
    store.write(lambda conn: conn.execute(actions.insert(), rows))
    store.close()
    return url


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            policy = make_policy(n)
            lint_s, findings = timed(lambda p=policy: lint(p))
            everything_s, everything = timed(lambda p=policy: prove(p, "=> not allow"))
            premise_s, premise = timed(lambda p=policy: prove(p, "tool=tool1 context.env=prod => deny"))
            url = make_history(Path(tmp) / f"h{n}.db", n * 10, max(1, n // 3))
            replay_s, report = timed(lambda p=policy, u=url: replay(p, u))
            out.append(
                {
                    "rules": len(policy.rules),
                    "lint_seconds": round(lint_s, 4),
                    "lint_findings": len(findings),
                    "prove_all_seconds": round(everything_s, 4),
                    "prove_all_verdict": everything.verdict,
                    "prove_premise_seconds": round(premise_s, 4),
                    "prove_premise_verdict": premise.verdict,
                    "replay_actions": report.total,
                    "replay_seconds": round(replay_s, 4),
                    "replay_actions_per_second": round(report.total / replay_s) if replay_s else None,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="30,300,1000", help="comma-separated rule counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run([int(s) for s in args.sizes.split(",")])
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return
    print(
        f"{'rules':>6} {'lint s':>8} {'findings':>8} {'prove all s':>11} {'prove s':>8} {'replay n':>9} {'replay/s':>9}"
    )
    for r in results:
        print(
            f"{r['rules']:>6} {r['lint_seconds']:>8} {r['lint_findings']:>8} {r['prove_all_seconds']:>11} "
            f"{r['prove_premise_seconds']:>8} {r['replay_actions']:>9} {r['replay_actions_per_second']:>9}"
        )


if __name__ == "__main__":
    main()
