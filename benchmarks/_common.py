"""Helpers shared by the benchmark scripts: start real servers, measure, print tables."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SEED_POLICY = ROOT / "tests" / "fixtures" / "seed_policy.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu, "system": platform.platform()}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    admin_key: str | None
    workdir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def create_key(self, role: str, **extra: Any) -> str:
        r = httpx.post(
            self.url + "/v1/keys",
            json={"role": role, **extra},
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        r.raise_for_status()
        return str(r.json()["key"])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not become healthy")


def start_faramesh(
    *, database_url: str | None = None, policy: Path = SEED_POLICY, extra: Sequence[str] = ()
) -> Server:
    workdir = Path(tempfile.mkdtemp(prefix="faramesh-bench-"))
    port = free_port()
    db = database_url or f"sqlite:///{workdir / 'bench.db'}"
    out = workdir / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "faramesh.cli.main", "serve", "--port", str(port), "--database-url", db,
         "--policy", str(policy), *extra],
        stdout=out.open("wb"), stderr=subprocess.STDOUT, cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    key = None
    for _ in range(100):
        match = re.search(r"^\s+(fm_\S+)\s*$", out.read_text(), re.M)
        if match:
            key = match.group(1)
            break
        time.sleep(0.05)
    return Server(proc, url, key, workdir)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def dump_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
