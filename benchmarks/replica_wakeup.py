"""Cross-replica wake-up: an agent long-polls replica A, an approver approves on replica B.

Two real `faramesh serve` processes share one new PostgreSQL database (created here
and dropped at the end). Each round submits an action that needs approval on A,
starts `GET /v1/actions/{id}/wait` on A, lets it settle, then approves on B and
records when the waiter's answer arrives. For comparison the same round runs with A
approving its own action (no cross-process notice involved).

    python benchmarks/replica_wakeup.py [--rounds 100] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import Server, machine, percentile, print_table, start_faramesh


def round_trip(waiter_on: Server, approver_on: Server, agent: str, approver: str, client: httpx.Client) -> dict[str, float]:
    body = {"tool": "refund", "operation": "process", "params": {"amount": 500}, "context": {}}
    action = client.post(waiter_on.url + "/v1/actions", json=body, headers={"Authorization": f"Bearer {agent}"}).json()
    assert action["status"] == "pending_approval", action
    answered: dict[str, Any] = {}

    def wait() -> None:
        with httpx.Client(timeout=60) as own:
            r = own.get(
                f"{waiter_on.url}/v1/actions/{action['id']}/wait",
                params={"timeout": 30},
                headers={"Authorization": f"Bearer {agent}"},
            )
        answered["at"] = time.perf_counter()
        answered["status"] = r.json()["status"]

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.15)  # the waiter is subscribed and parked
    sent = time.perf_counter()
    r = client.post(
        f"{approver_on.url}/v1/actions/{action['id']}/approve", json={}, headers={"Authorization": f"Bearer {approver}"}
    )
    acknowledged = time.perf_counter()
    assert r.status_code == 200, r.text
    thread.join(60)
    assert answered["status"] == "approved", answered
    return {"wake_ms": (answered["at"] - sent) * 1000, "approve_ms": (acknowledged - sent) * 1000}


def summarize(samples: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [s[key] for s in samples]
    return {p: round(percentile(values, q), 1) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "max": round(max(values), 1)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    name = "faramesh_bench_" + secrets.token_hex(4)
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = args.postgres.rsplit("/", 1)[0] + "/" + name
    servers: list[Server] = []
    try:
        a = start_faramesh(database_url=url)
        servers.append(a)
        b = start_faramesh(database_url=url)
        servers.append(b)
        b.admin_key = a.admin_key
        agent, approver = a.create_key("agent"), a.create_key("approver")
        results: dict[str, list[dict[str, float]]] = {"A waits, B approves": [], "A waits, A approves": []}
        with httpx.Client(timeout=60) as client:
            for _ in range(5):  # warm both processes up
                round_trip(a, b, agent, approver, client)
            for i in range(args.rounds):
                results["A waits, B approves"].append(round_trip(a, b, agent, approver, client))
                if i % 2 == 0:
                    results["A waits, A approves"].append(round_trip(a, a, agent, approver, client))
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    report = {
        "machine": machine(),
        "rounds": {k: len(v) for k, v in results.items()},
        "wake_ms": {k: summarize(v, "wake_ms") for k, v in results.items()},
        "approve_ms": {k: summarize(v, "approve_ms") for k, v in results.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_table(
        "Approve sent -> waiting agent answered (ms); approve round trip alone for reference",
        ["case", "rounds", "wake p50", "wake p90", "wake p99", "wake max", "approve p50"],
        [
            [k, len(v), *report["wake_ms"][k].values(), report["approve_ms"][k]["p50"]]
            for k, v in results.items()
        ],
    )


if __name__ == "__main__":
    main()
