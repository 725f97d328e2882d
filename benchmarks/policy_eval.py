"""Policy evaluation speed: Faramesh against Cedar (cedarpy) and Microsoft's Agent Governance Toolkit.

For each size N (10, 100, 1,000 rules) every engine gets an equivalent policy:
N rules for N distinct tools, each allowing operation `run` on its tool when
`amount <= 100`, and a default deny. The query names the tool of the *last*
rule (the worst case for an engine that walks rules in order) with amount 50,
and every engine must answer "allow" from that last rule.

- Faramesh runs in this process.
- cedarpy runs in its own virtualenv: one `permit` per tool with
  `when { context.amount <= 100 }`, parsed once into a PolicySet.
- Agent Governance Toolkit (`agent-governance-toolkit-core`,
  `agent_os.policies.PolicyEvaluator`) runs in its own virtualenv. Its rules
  hold a single condition each, so they test the tool name only; it does less
  work per rule than the others.

Peers are installed with `python -m venv` + pip under a cache directory
(default ~/.cache/faramesh-bench/<name>) and timed by a small script run
inside their venv; a peer that cannot be installed is reported and skipped.
Faramesh is also timed with glob tool patterns (`tool: "*tool<i>"`), which
its exact-name index cannot use: once with the per-name candidate list it
remembers, and once for a name it has not seen (a walk over every glob rule,
its linear worst case).

    python benchmarks/policy_eval.py            # a table
    python benchmarks/policy_eval.py --json     # machine-readable
    python benchmarks/policy_eval.py --no-peers --sizes 10,100,1000,10000
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = (10, 100, 1000)
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "faramesh-bench"


def measure(fn: Callable[[], object], min_seconds: float = 0.25, repeats: int = 5) -> float:
    """Seconds per call: the best of `repeats` runs, each of enough calls to last `min_seconds`."""
    number = 1
    while True:  # calibrate
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / 5:
            break
        number *= 2
    number = max(1, int(number * (min_seconds / max(elapsed, 1e-9))))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


# -- Faramesh -------------------------------------------------------------------------------------------------


def faramesh_policy(n: int, *, glob: bool) -> str:
    lines = ["default: deny", "rules:"]
    for i in range(n):
        tool = f'"*tool{i}"' if glob else f"tool{i}"  # "*tool7" matches tool7 and not tool17
        lines += [f"  - id: r{i}", f"    match: {{tool: {tool}, operation: run, amount_lte: 100}}", "    allow: true"]
    return "\n".join(lines) + "\n"


def bench_faramesh(sizes: list[int], min_seconds: float) -> list[dict[str, Any]]:
    from importlib.metadata import PackageNotFoundError, version

    from faramesh.policy import Effect, Policy

    try:
        ours = version("faramesh")
    except PackageNotFoundError:
        ours = "source"
    results = []
    scenarios = [
        ("faramesh", False, False),
        ("faramesh (glob tools)", True, False),
        ("faramesh (glob tools, unseen name)", True, True),
    ]
    for engine, glob, unseen in scenarios:
        for n in sizes:
            policy = Policy.from_yaml(faramesh_policy(n, glob=glob))
            tool = f"tool{n - 1}"

            def decide(policy: Policy = policy, tool: str = tool, unseen: bool = unseen) -> object:
                if unseen:  # forget the per-name candidate list, as for a tool name never seen before
                    policy._glob_memo.clear()
                return policy.evaluate(tool=tool, operation="run", params={"amount": 50}, context={"agent_id": "bot"})

            d = policy.evaluate(tool=tool, operation="run", params={"amount": 50}, context={"agent_id": "bot"})
            assert d.effect is Effect.ALLOW and d.rule_id == f"r{n - 1}", d
            results.append(_row(engine, ours, n, measure(decide, min_seconds)))
    return results


def _row(engine: str, version: str, rules: int, seconds: float) -> dict[str, Any]:
    return {
        "engine": engine,
        "version": version,
        "rules": rules,
        "us_per_decision": round(seconds * 1e6, 3),
        "decisions_per_second": round(1 / seconds),
    }


# -- peers ------------------------------------------------------------------------------------------------------

CEDAR_SCRIPT = """
import json, sys
from importlib.metadata import version
import cedarpy

sizes, min_seconds = json.loads(sys.argv[1]), float(sys.argv[2])
results = []
for n in sizes:
    text = "\\n".join(
        f'permit(principal, action == Action::"run", resource == Tool::"tool{i}") when {{ context.amount <= 100 }};'
        for i in range(n)
    )
    policies = cedarpy.PolicySet.from_str(text)
    entities = cedarpy.Entities.from_json_str("[]")
    request = {
        "principal": 'Agent::"bot"',
        "action": 'Action::"run"',
        "resource": f'Tool::"tool{n - 1}"',
        "context": {"amount": 50},
    }
    result = cedarpy.is_authorized(request, policies, entities)
    assert result.allowed, result.diagnostics.errors
    denied = dict(request, context={"amount": 500})
    assert not cedarpy.is_authorized(denied, policies, entities).allowed
    seconds = measure(lambda: cedarpy.is_authorized(request, policies, entities), min_seconds)
    results.append({"rules": n, "seconds": seconds})
print(json.dumps({"version": version("cedarpy"), "results": results}))
"""

AGT_SCRIPT = """
import json, logging, sys, warnings
from importlib.metadata import version
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from agent_os.policies import PolicyDocument, PolicyEvaluator

sizes, min_seconds = json.loads(sys.argv[1]), float(sys.argv[2])
results = []
for n in sizes:
    doc = PolicyDocument.model_validate({
        "name": "bench",
        "rules": [
            {"name": f"r{i}", "condition": {"field": "tool_name", "operator": "eq", "value": f"tool{i}"},
             "action": "allow"}
            for i in range(n)
        ],
        "defaults": {"action": "deny"},
    })
    evaluator = PolicyEvaluator(policies=[doc])
    context = {"tool_name": f"tool{n - 1}", "operation": "run", "amount": 50}
    decision = evaluator.evaluate(context)
    assert decision.allowed and decision.matched_rule == f"r{n - 1}", decision
    assert not evaluator.evaluate({"tool_name": "other", "amount": 50}).allowed
    seconds = measure(lambda: evaluator.evaluate(context), min_seconds)
    results.append({"rules": n, "seconds": seconds})
print(json.dumps({"version": version("agent-governance-toolkit-core"), "results": results}))
"""

PEERS = [
    {"name": "cedarpy", "engine": "cedar (cedarpy)", "package": "cedarpy", "module": "cedarpy", "script": CEDAR_SCRIPT},
    {
        "name": "agent-governance-toolkit",
        "engine": "agent governance toolkit",
        "package": "agent-governance-toolkit-core",
        "module": "agent_os.policies",
        "script": AGT_SCRIPT,
    },
]


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def ensure_peer(peer: dict[str, str], cache: Path, log: Callable[[str], None]) -> Path:
    """A venv with the peer installed; raises RuntimeError with the reason when that is not possible."""
    venv = cache / peer["name"]
    python = _venv_python(venv)
    if python.exists() and _run([str(python), "-c", f"import {peer['module']}"], 120).returncode == 0:
        return python
    log(f"installing {peer['package']} into {venv} ...")
    made = _run([sys.executable, "-m", "venv", "--clear", str(venv)], 300)
    if made.returncode != 0:
        raise RuntimeError(f"python -m venv failed: {made.stderr.strip()[-500:]}")
    pip = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", peer["package"]], 900)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install {peer['package']} failed: {pip.stderr.strip()[-500:]}")
    check = _run([str(python), "-c", f"import {peer['module']}"], 120)
    if check.returncode != 0:
        raise RuntimeError(f"import {peer['module']} failed: {check.stderr.strip()[-500:]}")
    return python


def bench_peer(peer: dict[str, str], python: Path, sizes: list[int], min_seconds: float) -> list[dict[str, Any]]:
    source = "from __future__ import annotations\nimport time\n" + inspect.getsource(measure) + peer["script"]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False, encoding="utf-8") as fh:
        fh.write(source)
        script = fh.name
    try:
        done = _run([str(python), script, json.dumps(sizes), str(min_seconds)], 1800)
    finally:
        os.unlink(script)
    if done.returncode != 0:
        raise RuntimeError(f"the timing script failed: {done.stderr.strip()[-800:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return [_row(peer["engine"], data["version"], r["rules"], r["seconds"]) for r in data["results"]]


# -- main -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated rule counts")
    parser.add_argument("--no-peers", action="store_true", help="time Faramesh only")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where peer virtualenvs live")
    parser.add_argument("--min-time", type=float, default=0.25, help="seconds per timing run (best of 5)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    results = bench_faramesh(sizes, args.min_time)
    skipped: list[dict[str, str]] = []
    if not args.no_peers:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        for peer in PEERS:
            try:
                python = ensure_peer(peer, args.cache_dir, log)
                results += bench_peer(peer, python, sizes, args.min_time)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as exc:
                log(f"{peer['engine']}: skipped ({exc})")
                skipped.append({"engine": peer["engine"], "reason": str(exc)})

    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "policy_eval",
                    "python": platform.python_version(),
                    "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
                    "query": "N rules for N tools; the last rule's tool, amount 50; expected allow",
                    "results": results,
                    "skipped": skipped,
                },
                indent=2,
            )
        )
        return 0
    print(f"\nPolicy evaluation, worst case (matching rule last), Python {platform.python_version()}")
    print(f"{'engine':<34} {'version':<10} {'rules':>6} {'µs/decision':>12} {'decisions/s':>13}")
    for r in results:
        print(
            f"{r['engine']:<34} {r['version']:<10} {r['rules']:>6} {r['us_per_decision']:>12.2f} "
            f"{r['decisions_per_second']:>13,}"
        )
    for s in skipped:
        print(f"{s['engine']}: not measured ({s['reason']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
