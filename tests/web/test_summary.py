"""Queue rows: the arguments that matter (the rule's fields first, compact and escaped),
and the agent's presence when the server sends it (nothing when it does not)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from faramesh.policy import Policy
from faramesh.server.web.render import env
from faramesh.server.web.summary import arg_summary, args_line, format_value, presence_text, rule_fields

POLICY = Policy.from_yaml(
    "rules:\n  - id: big\n    match: {tool: refund, amount_gt: 100, any: [{customer_in: [a]}, {context.env_eq: prod}]}\n"
    "    require_approval: true\n"
)


def iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).isoformat().replace("+00:00", "Z")


def test_the_rules_fields_come_first_then_the_rest() -> None:
    fields = rule_fields(POLICY)["big"]
    assert sorted(fields) == ["amount", "customer"]  # params only: context.env is not an argument
    args = arg_summary(
        {"note": "hi", "customer": "cus_123", "amount": 4321.5, "extra": 1}, ("amount", "customer"), limit=3
    )
    assert [(a.name, a.text) for a in args] == [("amount", "4,321.50"), ("customer", "cus_123"), ("note", "hi")]
    assert args_line(args) == "amount 4,321.50 · customer cus_123 · note hi"


def test_values_are_compact_and_long_ones_cut() -> None:
    assert [format_value(v) for v in (1200, 0.125, 19.99, 3.0, True, None, {"b": 1, "a": [1]})] == [
        "1,200",
        "0.125",
        "19.99",
        "3",
        "true",
        "null",
        '{"a":[1],"b":1}',
    ]
    [long] = arg_summary({"memo": "x" * 500})
    assert len(long.text) == 40 and long.text.endswith("…") and long.full == "x" * 500
    assert arg_summary({"user": {"role": "admin"}}, ("user.role",))[0].name == "user.role"
    assert arg_summary("not an object") == []


def test_presence_is_shown_only_when_known() -> None:
    assert presence_text(None) is None
    assert presence_text({}) is None
    assert presence_text({"agent_waiting": True, "agent_seen_at": iso(0)}) == "agent is waiting"
    assert presence_text({"agent_waiting": False, "agent_seen_at": iso(12 * 60 + 5)}) == "agent stopped waiting 12m ago"
    assert presence_text({"agent_waiting": False, "agent_seen_at": None}) is None


def test_the_queue_template_renders_presence_and_escapes_arguments() -> None:
    base = {
        "id": "a1",
        "tool": "refund",
        "operation": "process",
        "agent_id": "bot",
        "risk_level": "high",
        "reason": "r",
        "created_at": iso(5),
        "request_hash": "0" * 64,
        "approval": {"quorum": 1, "expires_at": None},
    }
    rows = []
    for presence in (None, {"agent_waiting": True, "agent_seen_at": iso(0)}):
        action = base | ({"presence": presence} if presence else {})
        args = arg_summary({"note": "<b>x</b>"})
        rows.append({"a": action, "args": args, "args_line": args_line(args), "presence": presence_text(presence)})
    html = env.get_template("queue.html").render(
        rows=rows,
        filters={"tool": "", "agent": "", "risk": "", "sort": "newest"},
        sorts={},
        problems=[],
        csrf_token="t",
        pending_count=2,
        user=None,
        path="/",
        filtered=False,
        more=False,
        limit=200,
    )
    assert html.count("agent is waiting") == 1
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
