"""Dashboard History page speed over a large table.

Fills a SQLite database with N actions (bulk inserts, varied status, tool, agent and
risk, one second apart), starts `faramesh serve` on it, logs in to the dashboard and
times GET /history for each filter the page offers, the first page and pages deep
into the cursor chain, plus the pending queue. Every request renders the full HTML
page through the real server.

    python benchmarks/dashboard_history.py [--actions 1000000] [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks._common import dump_json, machine, percentile, print_table, start_faramesh
from faramesh.storage import Store

TOOLS = [f"tool_{i}" for i in range(20)]
AGENTS = [f"agent-{i}" for i in range(200)]
STATUSES = [("allowed", 60), ("denied", 20), ("approved", 10), ("succeeded", 9), ("pending_approval", 1)]
RISKS = [("low", 50), ("medium", 30), ("high", 15), ("critical", 5)]


def _pick(rng: random.Random, weighted: list[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def build(path: Path, count: int, start: float) -> list[str]:
    """Create the schema through the migrations, then bulk-insert actions; return some ids."""
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.close()
    rng = random.Random(7)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    sample: list[str] = []
    batch: list[tuple[Any, ...]] = []
    sql = (
        "INSERT INTO actions (id, status, decision, reason, risk_level, rule_id, policy_hash, request_hash, tool,"
        " operation, params, context, agent_id, submitted_by, approval_quorum, version, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?)"
    )
    for i in range(count):
        action_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        status = _pick(rng, STATUSES)
        decision = {"allowed": "allow", "denied": "deny"}.get(status, "require_approval")
        ts = start + i
        batch.append(
            (
                action_id,
                status,
                decision,
                "benchmark row",
                _pick(rng, RISKS),
                "rules[0]",
                "0" * 64,
                "1" * 64,
                rng.choice(TOOLS),
                "run",
                '{"amount": 10}',
                "{}",
                rng.choice(AGENTS),
                "benchkey",
                ts,
                ts,
            )
        )
        if i % 50_000 == 0:
            sample.append(action_id)
        if len(batch) == 20_000:
            db.executemany(sql, batch)
            batch.clear()
    if batch:
        db.executemany(sql, batch)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return sample


def login(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120, follow_redirects=False)
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, "login form without CSRF token"
    r = client.post("/login", data={"key": key, "csrf_token": token.group(1)})
    assert r.status_code == 303, r.text
    return client


def timed(client: httpx.Client, path: str, params: dict[str, Any], repeat: int) -> tuple[list[float], str]:
    times = []
    text = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, params, r.status_code)
        text = r.text
    return times, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--deep", type=int, default=200, help="follow this many Older links for the deep page")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="faramesh-history-"))
    db_path = workdir / "history.db"
    start = time.time() - args.actions - 60
    t0 = time.perf_counter()
    sample = build(db_path, args.actions, start)
    build_s = time.perf_counter() - t0

    server = start_faramesh(database_url=f"sqlite:///{db_path}")
    results: list[dict[str, Any]] = []
    try:
        assert server.admin_key
        client = login(server.url, server.admin_key)

        def iso(ts: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(ts))

        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("queue (pending, newest 200)", "/", {}),
            ("history, no filter", "/history", {}),
            ("status=denied", "/history", {"status": "denied"}),
            ("status=pending_approval", "/history", {"status": "pending_approval"}),
            ("tool=tool_3", "/history", {"tool": "tool_3"}),
            ("agent=agent-42", "/history", {"agent": "agent-42"}),
            ("risk=critical", "/history", {"risk": "critical"}),
            ("tool+agent+status", "/history", {"tool": "tool_3", "agent": "agent-42", "status": "allowed"}),
            ("id prefix (8 chars)", "/history", {"q": sample[len(sample) // 2][:8]}),
            ("since = last hour", "/history", {"since": iso(start + args.actions - 3600)}),
            ("until = oldest tenth", "/history", {"until": iso(start + args.actions // 10)}),
        ]
        for name, path, params in cases:
            times, text = timed(client, path, params, args.repeat)
            rows = len(re.findall(r'<tr data-id="', text))
            results.append(
                {"case": name, "rows": rows, "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95)}
            )

        # Deep paging: follow the Older link many times, timing each page.
        url: str | None = "/history"
        page_times: list[float] = []
        pages = 0
        while url and pages < args.deep:
            t1 = time.perf_counter()
            r = client.get(url.replace("&amp;", "&"))
            page_times.append((time.perf_counter() - t1) * 1000)
            match = re.search(r'<a href="([^"]+)" rel="next">', r.text)
            url = match.group(1) if match else None
            pages += 1
        results.append(
            {
                "case": f"paging: {pages} Older pages in a row",
                "rows": pages * 50,
                "p50_ms": percentile(page_times, 50),
                "p95_ms": percentile(page_times, 95),
            }
        )
    finally:
        server.stop()

    report = {
        "benchmark": "dashboard_history",
        "actions": args.actions,
        "build_seconds": round(build_s, 1),
        "machine": machine(),
        "results": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
    }
    if args.json:
        dump_json(report)
        return
    print(f"{args.actions} actions in SQLite (built in {build_s:.1f}s); {args.repeat} requests per case")
    print_table(
        "GET through the real server, full HTML page (ms)",
        ["case", "rows", "p50", "p95"],
        [[r["case"], r["rows"], f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}"] for r in results],
    )


if __name__ == "__main__":
    main()
