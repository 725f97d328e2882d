"""Approval wake-up: from the approve request to the agent's wait returning.

One real `faramesh serve` (SQLite by default). Each round an agent submits an action
that needs approval and parks in `client.wait_for_decision(id)` (the SDK's long-poll
loop, sync and async); an approver then approves from another client. We record the
time from sending the approve request to `wait_for_decision` returning in the agent.

For comparison, the same run measures the seed guide's loop (`time.sleep(2)` then
`get_action`, up to 150 times): several agents poll at phases spread over the 2 s
period, actions are approved, and we record when each loop notices.

    python benchmarks/approval_wakeup.py [--rounds 200] [--pollers 30] [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import dump_json, machine, percentile, print_table, start_faramesh
from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient

PARK = 0.03  # let the waiter's request reach the server and subscribe before approving


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p90_ms": percentile(samples_ms, 90),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms),
        "mean_ms": statistics.fmean(samples_ms),
    }


def long_poll_sync(url: str, agent_key: str, approver_key: str, rounds: int) -> tuple[list[float], list[float]]:
    """(wake-up ms, approve round trip ms) per round, with the sync SDK."""
    wake, approve = [], []
    with ExecutionGovernorClient(url, agent_key) as agent, ExecutionGovernorClient(url, approver_key) as approver:
        for i in range(rounds):
            action = agent.submit_action("refund", "process", {"amount": 500 + i, "customer_id": "cus_b"})
            assert action["status"] == "pending_approval", action
            done: dict[str, Any] = {}

            def wait(action_id: str = action["id"], out: dict[str, Any] = done) -> None:
                out["action"] = agent.wait_for_decision(action_id, timeout=60)
                out["at"] = time.perf_counter()

            thread = threading.Thread(target=wait)
            thread.start()
            time.sleep(PARK)
            sent = time.perf_counter()
            approver.approve_action(action["id"], reason="bench")
            acked = time.perf_counter()
            thread.join(60)
            assert done["action"]["status"] == "approved", done
            wake.append((done["at"] - sent) * 1000)
            approve.append((acked - sent) * 1000)
    return wake, approve


async def long_poll_async(url: str, agent_key: str, approver_key: str, rounds: int) -> list[float]:
    wake = []
    async with (
        AsyncExecutionGovernorClient(url, agent_key) as agent,
        AsyncExecutionGovernorClient(url, approver_key) as approver,
    ):
        for i in range(rounds):
            action = await agent.submit_action("refund", "process", {"amount": 700 + i})
            returned: dict[str, float] = {}

            async def wait(action_id: str = action["id"], out: dict[str, float] = returned) -> None:
                decided = await agent.wait_for_decision(action_id, timeout=60)
                out["at"] = time.perf_counter()
                assert decided["status"] == "approved", decided

            task = asyncio.create_task(wait())
            await asyncio.sleep(PARK)
            sent = time.perf_counter()
            await approver.approve_action(action["id"], reason="bench")
            await task
            wake.append((returned["at"] - sent) * 1000)
    return wake


def seed_polling(url: str, agent_key: str, approver_key: str, pollers: int) -> list[float]:
    """The seed guide's loop, verbatim in spirit: sleep 2 s, get_action, check status."""
    noticed: dict[str, float] = {}
    ids: list[str] = []
    threads = []
    with ExecutionGovernorClient(url, agent_key) as setup:
        for i in range(pollers):
            ids.append(setup.submit_action("refund", "process", {"amount": 900 + i})["id"])

    def seed_loop(action_id: str) -> None:
        with ExecutionGovernorClient(url, agent_key) as client:
            for _ in range(150):  # 5 minutes
                time.sleep(2)
                updated = client.get_action(action_id)
                if updated["status"] in ("approved", "allowed"):
                    noticed[action_id] = time.perf_counter()
                    break
                if updated["status"] == "denied":
                    raise PermissionError("Refund was denied")

    # Start the loops at phases spread evenly over the 2 s period, as independent agents would be.
    for action_id in ids:
        thread = threading.Thread(target=seed_loop, args=(action_id,))
        thread.start()
        threads.append(thread)
        time.sleep(2.0 / pollers)
    sent: dict[str, float] = {}
    with ExecutionGovernorClient(url, approver_key) as approver:
        for action_id in ids:
            sent[action_id] = time.perf_counter()
            approver.approve_action(action_id, reason="bench")
    for thread in threads:
        thread.join(30)
    return [(noticed[a] - sent[a]) * 1000 for a in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200, help="long-poll rounds (sync; async runs half)")
    parser.add_argument("--pollers", type=int, default=30, help="seed polling loops (2 s period)")
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    server = start_faramesh(database_url=args.database_url)
    try:
        agent_key = server.create_key("agent")
        approver_key = server.create_key("approver")
        # Warm up connections and code paths.
        long_poll_sync(server.url, agent_key, approver_key, 5)
        wake, approve = long_poll_sync(server.url, agent_key, approver_key, args.rounds)
        wake_async = asyncio.run(long_poll_async(server.url, agent_key, approver_key, max(1, args.rounds // 2)))
        polled = seed_polling(server.url, agent_key, approver_key, args.pollers)
    finally:
        server.stop()

    results = {
        "wait_for_decision (long-poll, sync SDK)": summary(wake),
        "wait_for_decision (long-poll, async SDK)": summary(wake_async),
        "seed loop (sleep 2 s + get_action)": summary(polled),
        "approve request round trip (for reference)": summary(approve),
    }
    database = "sqlite" if args.database_url is None else args.database_url.split(":", 1)[0]
    if args.json:
        dump_json({"benchmark": "approval_wakeup", "database": database, "machine": machine(), "results": results})
        return
    rows = [
        [name, r["n"], f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}"]
        for name, r in results.items()
    ]
    print_table(
        f"Approve request -> agent's wait returns ({database}, {machine()['cpus']} CPUs)",
        ["method", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        rows,
    )
    speedup = results["seed loop (sleep 2 s + get_action)"]["p50_ms"] / max(
        results["wait_for_decision (long-poll, sync SDK)"]["p50_ms"], 1e-9
    )
    print(f"\nlong-poll p50 is {speedup:.0f}x lower than the seed's 2-second polling loop")


if __name__ == "__main__":
    main()
