"""`faramesh policy …` (validate, lint, test, explain, diff, replay, prove), `faramesh packs …` and `faramesh init`.

Every command is a thin shell over a function in `faramesh.policy.tooling`, so
the same checks run from Python. Exit codes: 0 fine, 1 the check failed (an
invalid policy, a lint finding, a failing case, a changed decision with
--fail-on-change, a counter-example), 2 bad usage, 3 `prove` cannot decide.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from faramesh import jsonstrict
from faramesh.cli.common import database_option, echo_json, echo_table, require_server, with_progress
from faramesh.cli.exitcodes import ExitCode

CANNOT_DECIDE_EXIT = ExitCode.UNDECIDED


def _fail(lines: list[str], code: int = 1) -> NoReturn:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


def _load(path: str) -> Any:
    """The compiled policy at ``path``; on problems print each one and exit 1."""
    from faramesh.policy.tooling import validate_file

    result = validate_file(path)
    if result.policy is None:
        _fail(result.render())
    return result.policy


def _json_object(value: str | None, option: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = jsonstrict.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"amount\": 150}'", param_hint=option)
    return parsed


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use an ISO time such as 2026-01-05T10:00:00+01:00", param_hint="--now") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- faramesh policy ---------------------------------------------------------------
@click.group("policy")
def policy_group() -> None:
    """Check, test, explain, compare, replay and prove policies."""


@policy_group.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result (problems, warnings, hash) as JSON.")
def policy_validate(path: str, as_json: bool) -> None:
    """Exit 0 when FILE is a valid policy; else print every problem and exit 1."""
    from faramesh.policy.tooling import validate_file

    result = validate_file(path)
    if as_json:
        echo_json(result.to_dict())
        sys.exit(0 if result.ok else ExitCode.FAILED)
    lines = result.render()
    if not result.ok:
        _fail(lines)
    for line in lines:
        click.echo(line)


@policy_group.command("lint")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--ignore", "ignored", multiple=True, metavar="CODE", help="Leave out findings with this code.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def policy_lint(path: str, ignored: tuple[str, ...], as_json: bool) -> None:
    """Warnings a reviewer needs: unreachable rules, risky regular expressions, allow before deny, …

    Exit 0 when there is nothing to report, 1 otherwise.
    """
    from faramesh.policy.tooling import lint
    from faramesh.policy.tooling.lint import CODES

    unknown = [code for code in ignored if code not in CODES]
    if unknown:
        raise click.BadParameter(f"unknown code {unknown[0]!r}; codes: {', '.join(CODES)}", param_hint="--ignore")
    policy = _load(path)
    findings = lint(policy, ignore=ignored)
    if as_json:
        echo_json([f.to_dict() for f in findings])
    else:
        for finding in findings:
            click.echo(finding.render(path))
        click.echo(f"{path}: {len(findings)} finding(s)" if findings else f"{path}: no findings")
    if findings:
        sys.exit(1)


@policy_group.command("test")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("cases_path", metavar="CASES", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def policy_test(path: str, cases_path: str, as_json: bool) -> None:
    """Run the cases in CASES (YAML) against FILE; print a pass/fail table; exit 1 on any mismatch."""
    from faramesh.policy.tooling import CasesError, load_cases_file, run_cases

    policy = _load(path)
    try:
        cases = load_cases_file(cases_path)
    except CasesError as exc:
        _fail([*exc.problems, f"{cases_path}: {len(exc.problems)} problem(s)"])
    report = run_cases(policy, cases)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.render())
    if not report.ok:
        sys.exit(1)


@policy_group.command("explain")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--tool", required=True, help="Tool name, e.g. refund.")
@click.option("--operation", "--op", "operation", required=True, help="Operation, e.g. process.")
@click.option("--params", "params_json", default=None, metavar="JSON", help="Params, e.g. '{\"amount\": 150}'.")
@click.option("--context", "context_json", default=None, metavar="JSON", help="Context as a JSON object.")
@click.option(
    "--agent", "agent_json", default=None, metavar="JSON", help='Agent, e.g. \'{"id": "bot", "groups": []}\'.'
)
@click.option("--now", default=None, metavar="TIME", help="Request time (ISO 8601) for rules with `during`.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def policy_explain(
    path: str,
    tool: str,
    operation: str,
    params_json: str | None,
    context_json: str | None,
    agent_json: str | None,
    now: str | None,
    as_json: bool,
) -> None:
    """The decision for one action and, for each rule considered, which condition held or failed and why."""
    from faramesh.policy.tooling import explain

    params = _json_object(params_json, "--params") or {}
    context = _json_object(context_json, "--context") or {}
    agent = _json_object(agent_json, "--agent")
    policy = _load(path)
    result = explain(
        policy, tool=tool, operation=operation, params=params, context=context, agent=agent, now=_time(now)
    )
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.render())


@policy_group.command("diff")
@click.argument("old_path", metavar="OLD", type=click.Path(dir_okay=False))
@click.argument("new_path", metavar="NEW", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the policies differ (like git diff --exit-code).")
def policy_diff(old_path: str, new_path: str, as_json: bool, exit_code: bool) -> None:
    """What changed from OLD to NEW, rule by rule."""
    from faramesh.policy.tooling import diff_policies

    result = diff_policies(_load(old_path), _load(new_path))
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.render())
    if exit_code and not result.empty:
        sys.exit(1)


GRANTS_OPTION = click.option(
    "--grants",
    "grants_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Standing grants to take into account: the JSON of GET /v1/grants (inactive ones are left out).",
)


def _with_grants(policy: Any, grants_file: str | None) -> Any:
    if grants_file is None:
        return policy
    from faramesh.policy import PolicyError
    from faramesh.policy.tooling import GrantsError, load_grants, with_grants

    try:
        grants = load_grants(Path(grants_file).read_text(encoding="utf-8"))
        return with_grants(policy, grants)
    except OSError as exc:
        _fail([f"Error: cannot read {grants_file}: {exc.strerror}"], 2)
    except (GrantsError, PolicyError) as exc:
        _fail([f"Error: {grants_file}: {exc}"], 2)


@policy_group.command("replay")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--since", default=None, help="Only actions from a sequence number (1200), a duration ago (7d) or a time."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"total": n, "changed": [...]}.')
@click.option("--fail-on-change", is_flag=True, help="Exit 1 when any decision would change (for CI).")
@GRANTS_OPTION
@database_option
def policy_replay(
    path: str, since: str | None, as_json: bool, fail_on_change: bool, grants_file: str | None, database_url: str
) -> None:
    """Re-decide the stored actions with the policy in FILE and report every decision that would change.

    With --grants, held actions that a standing grant fits count as allowed, as the server applies them.
    """
    from faramesh.policy.tooling import ReplayError, parse_since, replay

    require_server("policy replay")
    from faramesh.storage.history_reads import HistoryError, recorded_actions

    policy = _with_grants(_load(path), grants_file)
    try:
        window = parse_since(since)
        with recorded_actions(database_url, since_seq=window.seq, since_at=window.at) as records:
            report = replay(policy, with_progress(records, "Replaying", None), window)
    except (ReplayError, HistoryError) as exc:
        _fail([f"Error: {exc}"], ExitCode.USAGE)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        click.echo(report.render())
    if fail_on_change and report.changed:
        sys.exit(1)


@policy_group.command("prove")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--claim",
    "claims",
    multiple=True,
    required=True,
    help='e.g. "tool=refund operation=process amount>1000 => not allow" (repeatable).',
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@GRANTS_OPTION
def policy_prove(path: str, claims: tuple[str, ...], as_json: bool, grants_file: str | None) -> None:
    """Prove each claim for every possible action, or print a counter-example.

    With --grants, the claims are proven for the policy as the server applies it with those standing
    grants. Exit 0 when all are proven, 1 when a counter-example was found, 3 when some claim cannot be decided.
    """
    from faramesh.policy.tooling import ClaimError, parse_claim, prove

    parsed = []
    for text in claims:
        try:
            parsed.append(parse_claim(text))
        except ClaimError as exc:
            raise click.BadParameter(str(exc), param_hint="--claim") from None
    policy = _with_grants(_load(path), grants_file)
    results = [prove(policy, claim) for claim in parsed]
    if as_json:
        echo_json([r.to_dict() for r in results])
    else:
        click.echo("\n\n".join(r.render() for r in results))
    if any(r.verdict == "counter-example" for r in results):
        sys.exit(1)
    if any(r.verdict == "cannot decide" for r in results):
        sys.exit(CANNOT_DECIDE_EXIT)


# -- faramesh packs / init ---------------------------------------------------------
@click.group("packs")
def packs_group() -> None:
    """Ready-made policies with their test cases."""


@packs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help='Print [{"name", "description"}, ...].')
def packs_list(as_json: bool) -> None:
    """One pack per line: its name, then what it governs."""
    from faramesh.policy.packs import list_packs

    packs = list_packs()
    if as_json:
        echo_json([{"name": p.name, "description": p.description} for p in packs])
        return
    echo_table(("NAME", "DESCRIPTION"), ((p.name, p.description) for p in packs))


@packs_group.command("show")
@click.argument("name")
@click.option("--cases", "show_cases", is_flag=True, help="Print the pack's test cases instead of its policy.")
def packs_show(name: str, show_cases: bool) -> None:
    """Print a pack's policy YAML (or its cases)."""
    from faramesh.policy.packs import UnknownPack, get_pack

    try:
        pack = get_pack(name)
    except UnknownPack as exc:
        _fail([f"Error: {exc}"], ExitCode.NOT_FOUND)
    click.echo(pack.cases_text if show_cases else pack.policy_text, nl=False)


@click.command("init")
@click.option("--pack", "pack_name", required=True, help="Which pack (see faramesh packs list).")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write policy.yaml and policy.cases.yaml.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init_command(pack_name: str, directory: str, force: bool) -> None:
    """Write policy.yaml and policy.cases.yaml from a pack; refuses to overwrite without --force."""
    from faramesh.policy.packs import UnknownPack, get_pack

    try:
        pack = get_pack(pack_name)
    except UnknownPack as exc:
        _fail([f"Error: {exc}"])
    target = Path(directory)
    files = {target / "policy.yaml": pack.policy_text, target / "policy.cases.yaml": pack.cases_text}
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        _fail([f"Error: {', '.join(existing)} already exist(s); pass --force to overwrite"])
    target.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        file.write_text(text, encoding="utf-8")
    policy_file, cases_file = (str(p) for p in files)
    click.echo(f"Wrote {policy_file} and {cases_file} from the {pack.name} pack.")
    click.echo(f"Check them with: faramesh policy test {policy_file} {cases_file}")
