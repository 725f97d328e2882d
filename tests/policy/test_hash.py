"""The policy hash covers what decides, and nothing else."""

from __future__ import annotations

import hashlib
import json

import pytest

from faramesh.policy import Policy
from tests.policy.seed import SEED_POLICY

BASE = SEED_POLICY

SAME = [
    # flow style, no quotes, different key order, comments
    """
# refunds
rules:
  - {risk: high, reason: Large refunds need approval, require_approval: true,
     match: {amount_gt: 100, operation: process, tool: refund}}   # big ones
  - {match: {amount_lte: 100, tool: refund, operation: process}, allow: true, reason: Small refunds allowed,
     risk: low}
""",
    # defaults written out, alias op, a list of one name, 100.0, tool case
    """
default: deny
rules:
  - id: rules[0]
    match: {tool: [REFUND], op: process, amount_gt: 100.0}
    require_approval: true
    approval: {quorum: 1}
    reason: "Large refunds need approval"
    risk: high
  - id: rules[1]
    match: {tool: refund, operation: [process, process], amount_lte: 1.0e+2}
    allow: true
    reason: "Small refunds allowed"
    risk: low
""",
    # metadata and descriptions do not decide anything
    BASE.replace("rules:\n", 'version: 3\nname: "refunds"\ndescription: "about refunds"\nrules:\n', 1).replace(
        "    risk: low\n", "    risk: low\n    description: the small ones\n"
    ),
]

DIFFERENT = [
    BASE.replace("amount_gt: 100", "amount_gt: 101"),
    BASE.replace("amount_gt: 100", "amount_gte: 100"),
    BASE.replace("risk: high", "risk: critical"),
    BASE.replace("Small refunds allowed", "Small refunds are allowed"),
    BASE.replace("require_approval: true", "deny: true"),
    BASE.replace('tool: "refund"', 'tool: "refund*"', 1),
    BASE.replace('operation: "process"', 'operation: "create"', 1),
    "default: allow\n" + BASE,
    BASE + "  - {match: {tool: x}, deny: true}\n",
    BASE.replace("    risk: high\n", "    risk: high\n    approval: {timeout: 15m}\n"),
    BASE.replace("    risk: low\n", "    risk: low\n    rate_limit: {max: 5, per: 1m}\n"),
    BASE.replace("    risk: low\n", "    risk: low\n    during: {days: mon-fri}\n"),
    BASE.replace("  - match:\n", "  - id: big\n    match:\n", 1),
    # the same two rules in the other order
    "rules:\n"
    "  - {match: {tool: refund, operation: process, amount_lte: 100}, allow: true, reason: Small refunds allowed,"
    " risk: low}\n"
    "  - {match: {tool: refund, operation: process, amount_gt: 100}, require_approval: true,"
    " reason: Large refunds need approval, risk: high}\n",
]


def test_hash_is_a_sha256_hex_digest() -> None:
    h = Policy.from_yaml(BASE).hash
    assert len(h) == 64 and int(h, 16) >= 0


def test_hash_is_sha256_of_canonical_json_of_rules_and_default() -> None:
    policy = Policy.from_yaml(BASE)
    body = {"default": "deny", "rules": [r.to_dict() for r in policy.rules]}
    for rule in body["rules"]:
        del rule["line"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert policy.hash == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("text", SAME)
def test_hash_is_stable_under_reformatting(text: str) -> None:
    assert Policy.from_yaml(text).hash == Policy.from_yaml(BASE).hash


@pytest.mark.parametrize("text", DIFFERENT)
def test_hash_changes_when_a_decision_could_change(text: str) -> None:
    assert Policy.from_yaml(text).hash != Policy.from_yaml(BASE).hash


def test_all_different_variants_hash_differently() -> None:
    hashes = {Policy.from_yaml(text).hash for text in DIFFERENT}
    assert len(hashes) == len(DIFFERENT)


def test_condition_order_inside_match_does_not_matter() -> None:
    a = Policy.from_yaml("rules:\n  - {match: {x_eq: 1, y_in: [b, a], any: [{z_gt: 1}]}, allow: true}\n")
    b = Policy.from_yaml("rules:\n  - {match: {any: [{z_gt: 1}], y_in: [a, b], params.x_eq: 1.0}, allow: true}\n")
    assert a.hash == b.hash


def test_string_and_number_operands_are_distinct() -> None:
    a = Policy.from_yaml("rules:\n  - {match: {x_eq: 1}, allow: true}\n")
    b = Policy.from_yaml("rules:\n  - {match: {x_eq: '1'}, allow: true}\n")
    c = Policy.from_yaml("rules:\n  - {match: {x_eq: true}, allow: true}\n")
    assert len({a.hash, b.hash, c.hash}) == 3


def test_hash_tells_true_from_one_in_lists() -> None:
    """[1] and [1, true] decide {"x": true} differently, so they must hash differently."""
    one = Policy.from_yaml("rules:\n  - match: {x_in: [1]}\n    allow: true\n")
    both = Policy.from_yaml("rules:\n  - match: {x_in: [1, true]}\n    allow: true\n")
    assert (
        one.evaluate(tool="t", operation="o", params={"x": True}).effect
        != both.evaluate(tool="t", operation="o", params={"x": True}).effect
    )
    assert one.hash != both.hash
