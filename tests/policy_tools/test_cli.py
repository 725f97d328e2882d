"""`faramesh policy …`, `faramesh packs …` and `faramesh init`, through Click's runner and as subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from tests.conftest import SEED_POLICY, faramesh_cmd

BROKEN = "rules:\n  - match:\n      tool: refund\n      amount_gtt: 5\n    allow: true\n    risk: hgh\n"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(faramesh_cmd(*args), capture_output=True, text=True, cwd=cwd, timeout=120)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_validate_prints_every_problem_with_line_key_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    out = run("policy", "validate", str(bad))
    assert out.returncode == 1 and out.stdout == ""
    assert (
        f"{bad}:4:7: rules[0].match.amount_gtt: unknown condition 'amount_gtt' (did you mean amount_gt?)" in out.stderr
    )
    assert f"{bad}:6:11: rules[0].risk: invalid risk 'hgh' (did you mean high?)" in out.stderr
    assert "2 problem(s)" in out.stderr
    good = run("policy", "validate", str(SEED_POLICY))
    assert good.returncode == 0 and "valid, 3 rule(s), default deny" in good.stdout
    missing = run("policy", "validate", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 1 and "cannot read the policy file" in missing.stderr


def test_lint_exit_codes_and_json(tmp_path: Path) -> None:
    code, output = invoke("policy", "lint", str(SEED_POLICY))
    assert code == 1 and "approval-timeout: rule rules[0]" in output and "1 finding(s)" in output
    code, output = invoke("policy", "lint", str(SEED_POLICY), "--ignore", "approval-timeout")
    assert code == 0 and "no findings" in output
    code, output = invoke("policy", "lint", str(SEED_POLICY), "--json")
    assert code == 1 and json.loads(output)[0]["code"] == "approval-timeout"
    code, output = invoke("policy", "lint", str(SEED_POLICY), "--ignore", "nonsense")
    assert code == 2 and "unknown code" in output
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    out = run("policy", "lint", str(bad))
    assert out.returncode == 1 and "amount_gtt" in out.stderr


def test_test_prints_a_table_and_fails_on_a_mismatch(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- {name: small, tool: refund, operation: process, params: {amount: 5}, expect: allow}\n"
        "- {name: large, tool: refund, operation: process, params: {amount: 500}, expect: require_approval}\n"
    )
    out = run("policy", "test", str(SEED_POLICY), str(cases))
    assert out.returncode == 0, out.stderr
    assert "2 passed, 0 failed, 2 total" in out.stdout
    cases.write_text("- {name: wrong, tool: refund, operation: process, params: {amount: 500}, expect: allow}\n")
    out = run("policy", "test", str(SEED_POLICY), str(cases))
    assert out.returncode == 1
    assert "FAIL" in out.stdout and "expected allow, got require_approval" in out.stdout
    code, output = invoke("policy", "test", str(SEED_POLICY), str(cases), "--json")
    assert code == 1 and json.loads(output)["results"][0]["failures"]
    cases.write_text("- {tool: refund, expect: maybe}\n")
    out = run("policy", "test", str(SEED_POLICY), str(cases))
    assert out.returncode == 1 and "expect must be one of" in out.stderr


def test_explain(tmp_path: Path) -> None:
    code, output = invoke(
        "policy",
        "explain",
        str(SEED_POLICY),
        "--tool",
        "refund",
        "--operation",
        "process",
        "--params",
        '{"amount": 150}',
    )
    assert code == 0
    assert output.startswith("decision: require_approval by rule rules[0]")
    assert "✓ params.amount > 100: 150 > 100" in output
    code, output = invoke(
        "policy", "explain", str(SEED_POLICY), "--tool", "refund", "--op", "process", "--params", "[1]"
    )
    assert code == 2 and "must be a JSON object" in output
    out = run(
        "policy",
        "explain",
        str(SEED_POLICY),
        "--tool",
        "refund",
        "--operation",
        "process",
        "--params",
        '{"amount": "150"}',
        "--json",
    )
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert data["decision"]["effect"] == "deny"
    assert [r["outcome"] for r in data["rules"]] == ["unknown", "unknown"]


def test_diff(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(SEED_POLICY.read_text().replace("amount_gt: 100", "amount_gt: 250"))
    code, output = invoke("policy", "diff", str(SEED_POLICY), str(new))
    assert code == 0
    assert "~ rule rules[0]" in output and "- condition params.amount > 100" in output
    assert "+ condition params.amount > 250" in output
    out = run("policy", "diff", str(SEED_POLICY), str(new), "--exit-code", "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["rules"][0]["kind"] == "changed"
    assert run("policy", "diff", str(SEED_POLICY), str(SEED_POLICY), "--exit-code").returncode == 0


def test_prove_exit_codes() -> None:
    claim = "tool=refund operation=process amount>1000 => not allow"
    out = run("policy", "prove", str(SEED_POLICY), "--claim", claim)
    assert out.returncode == 0 and "proven" in out.stdout
    out = run("policy", "prove", str(SEED_POLICY), "--claim", claim, "--claim", "tool=refund => deny")
    assert out.returncode == 1 and "counter-example" in out.stdout and "params:" in out.stdout
    code, output = invoke("policy", "prove", str(SEED_POLICY), "--claim", "tool=refund => deny", "--json")
    assert code == 1
    [result] = json.loads(output)
    assert result["verdict"] == "counter-example" and result["counterexample"]["decision"] != "deny"
    code, output = invoke("policy", "prove", str(SEED_POLICY), "--claim", "tool=refund")
    assert code == 2 and "=>" in output


def test_prove_cannot_decide_exits_8(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - match: {tool: search}\n    allow: true\n    rate_limit: {max: 1, per: 1m}\n")
    code, output = invoke("policy", "prove", str(policy), "--claim", "tool=search => allow")
    assert code == 8 and "cannot decide" in output


def test_packs_list_and_show() -> None:
    out = run("packs", "list")
    assert out.returncode == 0
    header, *lines = out.stdout.splitlines()
    assert header.split() == ["NAME", "DESCRIPTION"]
    assert len(lines) >= 6
    names = [line.split()[0] for line in lines]
    assert {"payments", "shell", "database", "email", "http-egress", "cloud-spend", "pii"} <= set(names)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # a name, then a description
    code, output = invoke("packs", "show", "shell")
    assert code == 0 and "shell-read-only" in output and output.lstrip().startswith("#")
    code, output = invoke("packs", "show", "shell", "--cases")
    assert code == 0 and "expect:" in output
    code, output = invoke("packs", "show", "paymnts")
    assert code == 3 and "did you mean payments?" in output
    listed = json.loads(run("packs", "list", "--json").stdout)
    assert [pack["name"] for pack in listed] == names and all(pack["description"] for pack in listed)


def test_init_writes_a_pack_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = run("init", "--pack", "payments", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "policy.yaml").read_text().startswith("# Payments")
    assert (tmp_path / "policy.cases.yaml").exists()
    # what it wrote passes its own cases
    tested = run("policy", "test", "policy.yaml", "policy.cases.yaml", cwd=tmp_path)
    assert tested.returncode == 0 and " 0 failed" in tested.stdout
    (tmp_path / "policy.yaml").write_text("# mine\n")
    again = run("init", "--pack", "shell", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr
    assert (tmp_path / "policy.yaml").read_text() == "# mine\n"
    forced = run("init", "--pack", "shell", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and "shell-read-only" in (tmp_path / "policy.yaml").read_text()
    code, output = invoke("init", "--pack", "nope", "--dir", str(tmp_path / "x"))
    assert code == 1 and "no pack named 'nope'" in output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["validate", "lint", "test", "explain", "diff", "replay", "prove"])
def test_every_policy_command_has_help(command: str) -> None:
    code, output = invoke("policy", command, "--help")
    assert code == 0 and "Usage: main policy " + command in output


def test_validate_json(tmp_path: Path) -> None:
    good = run("policy", "validate", "--json", str(SEED_POLICY))
    assert good.returncode == 0
    result = json.loads(good.stdout)
    assert result["valid"] is True and result["rules"] >= 1 and len(result["hash"]) == 64 and result["problems"] == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - match:\n      tool: refund\n      amount_gtt: 5\n    allow: true\n")
    broken = run("policy", "validate", "--json", str(bad))
    assert broken.returncode == 1
    [problem] = json.loads(broken.stdout)["problems"]
    assert problem["line"] == 4 and "amount_gt" in problem["hint"] + problem["message"]
