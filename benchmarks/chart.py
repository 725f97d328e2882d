"""Throughput and latency against concurrency, as a PNG for docs/performance.md.

Runs benchmarks/submit.py's measurement at several client counts (submit, decide and
the bare echo in the same run) and draws two panels: requests/s and p50/p99 latency.

    python benchmarks/chart.py [--levels 1,2,4,8,16] [--duration 8] [--out docs/images/submit-concurrency.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "submit-concurrency.png"))
    args = parser.parse_args()
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "submit.py"), "--json", "--duration", str(args.duration),
         "--concurrency", args.levels],
        capture_output=True, text=True, check=True,
    ).stdout
    data = json.loads(out)
    rows = data["results"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = [r["connections"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(clients, [r["faramesh"]["rps"] for r in rows], "o-", label="faramesh submit (durable)")
    left.plot(clients, [r["decide"]["rps"] for r in rows], "^-", label="faramesh /v1/decide (stateless)")
    left.plot(clients, [r["echo"]["rps"] for r in rows], "s--", label="bare FastAPI echo")
    left.set_xscale("log", base=2)
    left.set_xticks(clients, [str(c) for c in clients])
    left.set_xlabel("concurrent clients")
    left.set_ylabel("requests / s")
    left.set_title("Throughput")
    left.legend()
    right.plot(clients, [r["faramesh"]["p50_ms"] for r in rows], "o-", label="faramesh p50")
    right.plot(clients, [r["faramesh"]["p99_ms"] for r in rows], "o:", label="faramesh p99")
    right.plot(clients, [r["decide"]["p99_ms"] for r in rows], "^:", label="decide p99")
    right.plot(clients, [r["echo"]["p99_ms"] for r in rows], "s--", label="echo p99")
    right.set_xscale("log", base=2)
    right.set_xticks(clients, [str(c) for c in clients])
    right.set_xlabel("concurrent clients")
    right.set_ylabel("latency (ms)")
    right.set_title("Latency")
    right.legend()
    m = data["machine"]
    fig.suptitle(f"POST /v1/actions on {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
