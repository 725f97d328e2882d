"""Durable submit throughput and latency against the real server, next to a bare FastAPI echo.

Both are served by uvicorn (one process, same loop and HTTP parser); the load comes
from wrk (Debian package `wrk`) in a separate process. Our server runs with its real
settings: SQLite in WAL mode with synchronous=FULL, every 201 acknowledged only after
its group commit reached the disk.

    python benchmarks/submit.py [--duration 10] [--concurrency 1,8] [--json]
    python benchmarks/submit.py --postgres postgresql://postgres@127.0.0.1:5432 --workers 1,2

With --postgres, each run gets a fresh database on that server (created and dropped
here); --workers compares `serve --workers N` for each N in the list.
"""

from __future__ import annotations

import argparse
import contextlib
import uuid
from collections.abc import Iterator
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    ROOT,
    dump_json,
    free_port,
    machine,
    print_table,
    start_faramesh,
    wait_healthy,
)

BODY = {"tool": "refund", "operation": "process", "params": {"amount": 50, "customer_id": "cus_1"},
        "context": {"agent_id": "billing-bot"}}

LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, key: str, connections: int, duration: int, path: str = "/v1/actions") -> dict[str, Any]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(LUA.format(body=json.dumps(json.dumps(BODY)), key=key))
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
         url + path],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "connections": connections,
        "rps": rps,
        "p50_ms": _ms(lat.get("50", "nan")),
        "p99_ms": _ms(lat.get("99", "nan")),
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def start_echo() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.echo_app:app", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (no database): benchmark on PostgreSQL")
    parser.add_argument("--workers", default="1", help="comma-separated worker counts (PostgreSQL only above 1)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install -y wrk")
    levels = [int(c) for c in args.concurrency.split(",")]

    echo_proc, echo_url = start_echo()
    try:
        run_wrk(echo_url, "x", 8, 2)  # warm up
        echo = [run_wrk(echo_url, "x", c, args.duration) for c in levels]
    finally:
        echo_proc.terminate()

    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        with _database(args.postgres) as database_url:
            extra = ("--rate-limit", "off", "--workers", str(workers))  # one key drives all the load
            server = start_faramesh(database_url=database_url, extra=extra)
            try:
                key = server.create_key("agent")
                run_wrk(server.url, key, 8, 2)  # warm up
                ours = [run_wrk(server.url, key, c, args.duration) for c in levels]
                # The stateless decision point: the same body, evaluated, nothing recorded.
                decides = [run_wrk(server.url, key, c, args.duration, "/v1/decide") for c in levels]
            finally:
                server.stop()
            # Every acknowledged submit must be on disk with its audit record: verify the chain.
            verified = subprocess.run(
                [sys.executable, "-m", "faramesh.cli.main", "audit", "verify", "--database-url",
                 database_url or f"sqlite:///{server.workdir / 'bench.db'}"],
                capture_output=True, text=True, cwd=server.workdir,
            )
            chain = "intact" if verified.returncode == 0 else f"FAILED: {verified.stdout[-300:]}"
        for e, o, d in zip(echo, ours, decides, strict=True):
            results.append(
                {"workers": workers, "connections": o["connections"], "faramesh": o, "echo": e,
                 "ratio": o["rps"] / e["rps"], "decide": d, "decide_ratio": d["rps"] / e["rps"], "audit": chain}
            )
    if args.json:
        dump_json({"machine": machine(), "results": results})
        return
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print_table(
        f"POST /v1/actions (durable, {backend}) vs bare FastAPI echo, same uvicorn, wrk load",
        ["workers", "clients", "faramesh req/s", "p50 ms", "p99 ms", "errors", "echo req/s", "echo p99 ms", "ratio"],
        [[r["workers"], r["connections"], f"{r['faramesh']['rps']:.0f}", f"{r['faramesh']['p50_ms']:.2f}",
          f"{r['faramesh']['p99_ms']:.2f}", r["faramesh"]["errors"], f"{r['echo']['rps']:.0f}",
          f"{r['echo']['p99_ms']:.2f}", f"{r['ratio']:.2f}"] for r in results],
    )
    print(f"audit verify after the runs: {', '.join(sorted({r['audit'] for r in results}))}")
    print_table(
        "POST /v1/decide (stateless: evaluated, not recorded) vs the same echo",
        ["workers", "clients", "decide req/s", "p50 ms", "p99 ms", "errors", "ratio"],
        [[r["workers"], r["connections"], f"{r['decide']['rps']:.0f}", f"{r['decide']['p50_ms']:.2f}",
          f"{r['decide']['p99_ms']:.2f}", r["decide"]["errors"], f"{r['decide_ratio']:.2f}"] for r in results],
    )


@contextlib.contextmanager
def _database(postgres: str | None) -> Iterator[str | None]:
    """None (the server's own SQLite file), or a fresh PostgreSQL database dropped afterwards."""
    if postgres is None:
        yield None
        return
    import psycopg

    name = f"faramesh_bench_{uuid.uuid4().hex[:12]}"
    admin = postgres.rstrip("/") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres.rstrip("/") + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
