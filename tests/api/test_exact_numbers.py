"""Numbers are judged exactly as sent: a decimal a double cannot hold is refused, never rounded.

`{"amount": 100.000000000000001}` used to be read as 100.0 and allowed by `amount_lte: 100`.
Through the real app in-process (Starlette's TestClient runs the lifespan), the policy
tools, the CLI and the OpenAI Agents wrapper.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from faramesh.cli.main import main
from faramesh.config import Settings
from faramesh.model import Role
from faramesh.policy import Effect, Policy, PolicyError
from faramesh.policy.tooling.cases import CasesError, load_cases
from faramesh.server.app import create_app
from faramesh.service import keys as service_keys

POLICY = textwrap.dedent(
    """
    default: deny
    rules:
      - id: small-refund
        match: {tool: refund, amount_lte: 100}
        allow: true
      - id: block-users
        match: {tool: admin, user_in: [admin, no, off, yes, on]}
        deny: true
      - id: admin
        match: {tool: admin}
        allow: true
    """
)
INEXACT = ["100.000000000000001", "99.9999999999999999999", "1e-400", "100.0000000000000000000000000001"]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("exact")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    settings = Settings(database_url=f"sqlite:///{tmp / 'f.db'}", policy=str(policy))
    with TestClient(create_app(settings)) as client:
        store = client.app.state.governor.store  # type: ignore[attr-defined]
        _, key = service_keys.create_key(store, role=Role.AGENT, name="agent", actor="test")
        yield client, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def body(amount: str, where: str = "params") -> str:
    inner = f'{{"amount": {amount}}}'
    params = inner if where == "params" else "{}"
    context = inner if where == "context" else "{}"
    return f'{{"tool": "refund", "operation": "process", "params": {params}, "context": {context}}}'


@pytest.mark.parametrize("path", ["/v1/actions", "/v1/decide", "/v1/gate/decide"])
@pytest.mark.parametrize("amount", INEXACT)
def test_an_inexact_decimal_is_refused_not_rounded_into_an_allow(
    app_client: tuple[TestClient, dict[str, str]], path: str, amount: str
) -> None:
    client, headers = app_client
    r = client.post(path, content=body(amount), headers=headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_json", "body")
    assert "cannot be compared exactly" in r.json()["detail"] or "too large" in r.json()["detail"]


def test_inexact_decimals_are_refused_anywhere_in_the_body(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = app_client
    r = client.post("/v1/decide", content=body("100.000000000000001", "context"), headers=headers)
    assert r.status_code == 422, r.text
    nested = '{"tool": "refund", "operation": "process", "params": {"items": [{"amount": 1.00000000000000001}]}}'
    assert client.post("/v1/decide", content=nested, headers=headers).status_code == 422


@pytest.mark.parametrize(
    ("amount", "status"),
    [
        ("100", "allowed"),
        ("100.0", "allowed"),
        ("100.00", "allowed"),
        ("99.99", "allowed"),
        ("0.1", "allowed"),
        ("1e2", "allowed"),
        ("100.0000000000001", "denied"),
        ("100.01", "denied"),
        # 100.00000000000001, which a double holds: over 100, so denied
        ("1.0000000000000001e2", "denied"),
    ],
)
def test_exact_decimals_are_judged_exactly(
    app_client: tuple[TestClient, dict[str, str]], amount: str, status: str
) -> None:
    client, headers = app_client
    r = client.post("/v1/actions", content=body(amount), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == status


def test_yaml_words_are_user_names_over_http(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = app_client
    for user in ("no", "off", "yes", "on"):
        r = client.post(
            "/v1/decide", json={"tool": "admin", "operation": "run", "params": {"user": user}}, headers=headers
        )
        assert r.status_code == 200 and r.json()["decision"] == "deny", (user, r.text)


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte", "eq", "ne"])
def test_a_policy_operand_that_a_double_cannot_hold_is_a_load_error(op: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(f"rules:\n  - match: {{tool: t, amount_{op}: 100.000000000000001}}\n    deny: true\n")
    [problem] = info.value.problems
    assert problem.line == 2 and "write 100.0" in problem.hint


@pytest.mark.parametrize("op", ["in", "not_in"])
def test_an_inexact_list_operand_is_a_load_error(op: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(f"rules:\n  - match: {{tool: t, amount_{op}: [5, 100.000000000000001]}}\n    deny: true\n")
    assert "more digits than a policy can compare exactly" in info.value.problems[0].message


def test_policy_numbers_compare_exactly_for_every_operator() -> None:
    policy = Policy.from_yaml(
        "rules:\n"
        "  - {id: gt, match: {tool: gt, amount_gt: 0.3}, allow: true}\n"
        "  - {id: in, match: {tool: in, amount_in: [0.1, 19.99]}, allow: true}\n"
    )
    assert policy.evaluate(tool="gt", operation="x", params={"amount": 0.30000000000000004}).effect is Effect.ALLOW
    assert policy.evaluate(tool="gt", operation="x", params={"amount": 0.3}).effect is Effect.DENY
    assert policy.evaluate(tool="in", operation="x", params={"amount": 19.99}).effect is Effect.ALLOW


def test_cases_files_refuse_inexact_numbers() -> None:
    with pytest.raises(CasesError) as info:
        load_cases("- {tool: refund, operation: process, params: {amount: 100.000000000000001}, expect: deny}")
    assert "more digits than a policy can compare exactly" in str(info.value)


def test_policy_explain_refuses_inexact_params(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    args = ["policy", "explain", str(policy), "--tool", "refund", "--operation", "process"]
    result = CliRunner().invoke(main, [*args, "--params", '{"amount": 100.000000000000001}'])
    assert result.exit_code == 2 and "cannot be compared exactly" in result.output, result.output
    ok = CliRunner().invoke(main, [*args, "--params", '{"amount": 100}'])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "text",
    ['{"a": 100.000000000000001}', '{"a": 1, "a": 2}', '{"a": 18446744073709551616}', '{"a": NaN}', "[1e400]"],
)
def test_strict_loads_refuses_what_a_plain_parser_would_change(text: str) -> None:
    from faramesh.jsonstrict import loads

    with pytest.raises(ValueError):
        loads(text)


def test_strict_loads_keeps_ordinary_numbers() -> None:
    from faramesh.jsonstrict import InexactJSON, loads

    assert loads('{"a": 0.1, "b": 19.99, "c": 1e-7, "d": 100.50, "e": -0.0, "f": 1.7e308}') == {
        "a": 0.1,
        "b": 19.99,
        "c": 1e-7,
        "d": 100.5,
        "e": -0.0,
        "f": 1.7e308,
    }
    with pytest.raises(InexactJSON):
        loads("3.14159265358979323846")
