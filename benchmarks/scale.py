"""Behaviour at scale: 1,000,000 stored actions.

Builds the database through the migrations and a bulk insert (not through HTTP),
starts the real server on it, then reports p50/p99 for the API's filtered list
queries (first page and deep cursor pages), get_action, the dashboard's queue and
history pages, the database size per action, and the audit verify rate on a log of
the same size (built by benchmarks/audit_verify.py's builder).

    python benchmarks/scale.py [--actions 1000000] [--repeat 30] [--skip-audit] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks import audit_verify, dashboard_history
from benchmarks._common import dump_json, machine, percentile, print_table, start_faramesh
from faramesh import audit
from faramesh.storage import Store


def timed(client: httpx.Client, path: str, params: dict[str, Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{path} {params} answered {r.status_code}: {r.text[:200]}")
    return times


def deep_cursor(client: httpx.Client, params: dict[str, Any], pages: int) -> str | None:
    cursor = None
    for _ in range(pages):
        body = client.get("/v1/actions", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        cursor = body["next_cursor"]
        if not cursor:
            break
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="faramesh-scale-"))
    db_path = tmp / "scale.db"
    start = time.time() - args.actions
    t0 = time.perf_counter()
    sample = dashboard_history.build(db_path, args.actions, start)
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in tmp.glob("scale.db*"))

    server = start_faramesh(database_url=f"sqlite:///{db_path}")
    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    try:
        client = httpx.Client(base_url=server.url, timeout=120,
                              headers={"Authorization": f"Bearer {server.admin_key}"})
        agent_key = server.create_key("agent")
        agent = httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {agent_key}"})
        mid = start + args.actions / 2
        cases: list[tuple[str, httpx.Client, str, dict[str, Any]]] = [
            ("list: newest 50", client, "/v1/actions", {"limit": 50}),
            ("list: status=pending_approval", client, "/v1/actions", {"status": "pending_approval"}),
            ("list: status=denied", client, "/v1/actions", {"status": "denied"}),
            ("list: tool=tool_7", client, "/v1/actions", {"tool": "tool_7"}),
            ("list: agent_id=agent-42", client, "/v1/actions", {"agent_id": "agent-42"}),
            ("list: risk=critical", client, "/v1/actions", {"risk": "critical"}),
            ("list: id prefix", client, "/v1/actions", {"id_prefix": sample[len(sample) // 2][:6]}),
            ("list: agent key (own actions)", agent, "/v1/actions", {}),
        ]
        deep = deep_cursor(client, {"limit": 100}, 200)
        if deep:
            cases.append(("list: page 200 by cursor", client, "/v1/actions", {"limit": 100, "cursor": deep}))
        cases.append(("get_action", client, f"/v1/actions/{sample[len(sample) // 2]}", {}))
        for name, c, path, params in cases:
            times = timed(c, path, params, args.repeat)
            results[name] = {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
            rows.append([name, f"{percentile(times, 50):.2f}", f"{percentile(times, 99):.2f}"])
        del mid
        dash = dashboard_history.login(server.url, server.admin_key or "")
        for name, path, params in (("dashboard: queue", "/", {}), ("dashboard: history", "/history", {}),
                                   ("dashboard: history tool filter", "/history", {"tool": "tool_3"})):
            times, _ = dashboard_history.timed(dash, path, params, args.repeat)
            results[name] = {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
            rows.append([name, f"{percentile(times, 50):.2f}", f"{percentile(times, 99):.2f}"])
    finally:
        server.stop()

    verify: dict[str, Any] = {}
    if not args.skip_audit:
        store = Store(f"sqlite:///{tmp / 'audit.db'}")
        store.upgrade()
        records, _ = audit_verify.build(store, args.actions)
        t1 = time.perf_counter()
        with store.connect() as conn:
            report = audit.verify_database(conn)
        elapsed = time.perf_counter() - t1
        store.close()
        verify = {"records": records, "seconds": elapsed, "records_per_s": records / elapsed, "ok": report.ok}

    summary = {
        "machine": machine(),
        "actions": args.actions,
        "build_seconds": build_s,
        "bytes_per_action": size / args.actions,
        "queries": results,
        "audit_verify": verify,
    }
    if args.json:
        dump_json(summary)
    else:
        print(f"{args.actions:,} actions built in {build_s:.0f} s; database {size / 1e6:.0f} MB, "
              f"{size / args.actions:.0f} bytes per action")
        print_table(f"Query latency over {args.actions:,} actions (ms, {args.repeat} runs, real server over HTTP)",
                    ["query", "p50", "p99"], rows)
        if verify:
            print(f"\naudit verify: {verify['records']:,} records in {verify['seconds']:.1f} s = "
                  f"{verify['records_per_s']:,.0f} records/s (intact: {verify['ok']})")
    if not os.environ.get("FARAMESH_KEEP_BENCH"):
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
