"""Property tests through the real HTTP API: whatever the params, context and name
spelling, the server's decision is exactly what the policy grants. In particular
nothing is ever allowed unless an allow rule truly holds.

The oracle below is written by hand from the policy text, without the policy engine."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inprocess import InProcessServer, auth, inprocess_server

POLICY = """\
default: deny
rules:
  - id: no-prod-deletes
    match: {tool: "db.*", operation: delete, context.env_eq: prod}
    deny: true
  - id: db-deletes
    match: {tool: "db.*", operation: delete}
    require_approval: true
  - id: db-reads
    match: {tool: "db.*", operation: read}
    allow: true
  - id: vip-refunds
    match: {tool: refund, operation: process, customer.tier_in: [gold, platinum], amount_gte: 0, amount_lte: 1000}
    allow: true
  - id: large-refunds
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
  - id: small-refunds
    match: {tool: refund, operation: process, amount_gte: 0, amount_lte: 100}
    allow: true
"""

MISSING = object()


def name(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def at(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
    return MISSING if obj is None else obj


def oracle(tool: str, operation: str, params: dict[str, Any], context: dict[str, Any]) -> str:
    t, o = name(tool), name(operation)
    amount, tier, env = at(params, "amount"), at(params, "customer", "tier"), at(context, "env")
    if t.startswith("db."):
        if o == "delete":
            return "deny" if env == "prod" else "require_approval"
        if o == "read":
            return "allow"
    if t == "refund" and o == "process":
        if isinstance(tier, str) and tier in ("gold", "platinum") and number(amount) and 0 <= amount <= 1000:
            return "allow"
        if number(amount) and amount > 100:
            return "require_approval"
        if number(amount) and 0 <= amount <= 100:
            return "allow"
    return "deny"


TOOLS = ["refund", "REFUND", "Refund", "ｒｅｆｕｎｄ", "refunds", "db.users", "DB.Orders", "db.", "dbx.users", "shell"]
OPERATIONS = [
    "process",
    "PROCESS",
    "Process",
    "ｐｒｏｃｅｓｓ",
    "delete",
    "DELETE",
    "read",
    "Read",
    "write",
    "processing",
]
EDGE_NUMBERS = [
    0,
    -0.0,
    100,
    100.0,
    100.000001,
    99.99999,
    101,
    -1,
    -0.000001,
    1000,
    1000.5,
    1e-300,
    1.7e308,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**30,
]

# Any text but NUL: the edge refuses NUL in every field before the policy sees it (422
# invalid_input, tested in test_edge_input.py), so it has no policy decision to compare.
# And no lone surrogate: it has no UTF-8 form, so no JSON body can carry one.
NO_NUL = st.characters(exclude_characters="\x00", codec="utf-8")
amounts = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["150", "50", "", "100", "1e3", "NaN", "Infinity", " 5"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(NO_NUL, max_size=3), st.integers(), max_size=2),
)
tiers = st.one_of(
    st.sampled_from(["gold", "platinum", "GOLD", "Gold", "silver", "gold ", "ｇｏｌｄ", ""]),
    st.integers(),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(["gold", "platinum"]), max_size=2),
)
params_strategy = st.fixed_dictionaries(
    {},
    optional={
        "amount": amounts,
        "customer": st.one_of(st.fixed_dictionaries({}, optional={"tier": tiers}), tiers),
        "AMOUNT": amounts,
        "amount ": amounts,
        "ａｍｏｕｎｔ": amounts,
        "note": st.text(NO_NUL, max_size=10),
    },
)
context_strategy = st.fixed_dictionaries(
    {},
    optional={
        "env": st.one_of(st.sampled_from(["prod", "PROD", "dev", " prod", "ｐｒｏｄ"]), st.integers(), st.none()),
        "amount": amounts,
    },
)


@pytest.fixture(scope="module")
def prop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, str]]:
    tmp = tmp_path_factory.mktemp("props")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    with inprocess_server(f"sqlite:///{tmp / 'faramesh.db'}", policy=policy, rate_limit=None) as srv:
        yield srv, srv.create_key("agent")


def test_oracle_reads_the_policy_as_written() -> None:
    assert oracle("refund", "process", {"amount": 50}, {}) == "allow"
    assert oracle("refund", "process", {"amount": 500}, {}) == "require_approval"
    assert oracle("refund", "process", {"amount": 500, "customer": {"tier": "gold"}}, {}) == "allow"
    assert oracle("refund", "process", {"amount": "50"}, {}) == "deny"
    assert oracle("refund", "process", {"amount": -5}, {}) == "deny"
    assert oracle("db.users", "delete", {}, {"env": "prod"}) == "deny"
    assert oracle("db.users", "delete", {}, {}) == "require_approval"


STATUS = {"allow": "allowed", "deny": "denied", "require_approval": "pending_approval"}


def exact_ints(value: Any) -> bool:
    """Every integer inside fits in 64 bits (else the server refuses the body rather
    than round it to a float)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value <= 2**64 - 1
    if isinstance(value, dict):
        return all(exact_ints(v) for v in value.values())
    if isinstance(value, list):
        return all(exact_ints(v) for v in value)
    return True


def refused_as_inexact(r: httpx.Response, *parts: Any) -> bool:
    if all(exact_ints(p) for p in parts):
        return False
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_json", r.text
    assert "64-bit" in r.json()["detail"]
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    tool=st.sampled_from(TOOLS),
    operation=st.sampled_from(OPERATIONS),
    params=params_strategy,
    context=context_strategy,
)
def test_dry_run_decision_is_exactly_what_the_policy_grants(
    prop_server: tuple[InProcessServer, str],
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any],
) -> None:
    srv, key = prop_server
    r = srv.post(
        "/v1/decide",
        json={"tool": tool, "operation": operation, "params": params, "context": context},
        headers=auth(key),
        timeout=30,
    )
    if refused_as_inexact(r, params, context):
        return
    assert r.status_code == 200, r.text
    expected = oracle(tool, operation, params, context)
    got = r.json()["decision"]
    if got == "allow":
        assert expected == "allow", f"allowed without an allow rule: {r.json()}"
    assert got == expected, r.json()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    tool=st.sampled_from(TOOLS),
    operation=st.sampled_from(OPERATIONS),
    params=params_strategy,
    context=context_strategy,
)
def test_recorded_status_is_exactly_what_the_policy_grants(
    prop_server: tuple[InProcessServer, str],
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any],
) -> None:
    srv, key = prop_server
    r = srv.post(
        "/v1/actions",
        json={"tool": tool, "operation": operation, "params": params, "context": context},
        headers=auth(key),
        timeout=30,
    )
    if refused_as_inexact(r, params, context):
        return
    assert r.status_code == 201, r.text
    action = r.json()
    expected = oracle(tool, operation, params, context)
    assert action["status"] == STATUS[expected], action
    # What was stored is what was judged.
    stored = srv.get(f"/v1/actions/{action['id']}", headers=auth(key)).json()
    assert stored["params"] == params and stored["status"] == action["status"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=params_strategy, literal=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 400]))
def test_non_json_numbers_are_refused_never_judged(
    prop_server: tuple[InProcessServer, str], params: dict[str, Any], literal: str
) -> None:
    """A NaN, an infinity or a number too big for a double anywhere in the body is a
    422, whatever else the body says."""
    import json

    srv, key = prop_server
    text = json.dumps({"tool": "refund", "operation": "process", "params": params | {"amount": "__X__"}})
    r = srv.post(
        "/v1/actions",
        content=text.replace('"__X__"', literal).encode(),
        headers=auth(key) | {"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_json", r.text
