"""Disguised names: a denied tool or operation dressed up with look-alike letters,
zero-width characters, full-width forms, controls, spaces or another case is either
refused (422) or recognised and denied. It is never allowed, under a policy whose
last rule allows everything else."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial.support import assert_error
from tests.inprocess import InProcessServer, auth, inprocess_server

POLICY = """\
default: deny
rules:
  - id: no-user-deletes
    match: {tool: user_management, operation: delete}
    deny: true
    reason: Agents may not delete users
  - id: no-shell
    match: {tool: shell}
    deny: true
    reason: No shell
  - id: no-prod-db
    match: {tool: "db.*", operation: drop}
    deny: true
    reason: Never drop
  - id: everything-else
    match: {tool: "*"}
    allow: true
    reason: Allowed by default in this test
"""

DENIED = [("user_management", "delete"), ("shell", "run"), ("db.prod", "drop")]

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u034f"]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\u202d", "\u061c"]
SPACES = [" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000", "\u2007", "\u205f"]
# Letters from other scripts that look like Latin ones.
HOMOGLYPHS = {
    "a": ["\u0430", "\u03b1", "\u0251"],
    "e": ["\u0435", "\u0454", "\u04bd"],
    "o": ["\u043e", "\u03bf", "\u0585"],
    "s": ["\u0455", "\ua731"],
    "l": ["\u04cf", "\u0399", "\u0406"],
    "r": ["\u0433"],
    "p": ["\u0440", "\u03c1"],
    "d": ["\u0501"],
    "u": ["\u057d", "\u1d1c"],
    "h": ["\u04bb"],
    "n": ["\u0578"],
    "t": ["\u0442"],
    "g": ["\u0261"],
    "m": ["\u043c"],
}


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def math_bold(text: str) -> str:
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr(0x1D41A + ord(c) - ord("a")))
        elif "A" <= c <= "Z":
            out.append(chr(0x1D400 + ord(c) - ord("A")))
        else:
            out.append(c)
    return "".join(out)


def variants(name: str) -> Iterator[tuple[str, str]]:
    """(label, disguised name) pairs for one name."""
    mid = len(name) // 2
    yield "upper", name.upper()
    yield "title", name.title()
    yield "swapcase-alternate", "".join(c.upper() if i % 2 else c for i, c in enumerate(name))
    yield "full-width", full_width(name)
    yield "full-width-half", full_width(name[:mid]) + name[mid:]
    yield "math-bold", math_bold(name)
    yield "nfd", unicodedata.normalize("NFD", name)
    if "s" in name:
        yield "long-s", name.replace("s", "\u017f")
    yield "combining-accent", name[:mid] + "\u0301" + name[mid:]
    for i, ch in enumerate(ZERO_WIDTH):
        yield f"zero-width-{i}-middle", name[:mid] + ch + name[mid:]
        yield f"zero-width-{i}-end", name + ch
        yield f"zero-width-{i}-start", ch + name
    for i, ch in enumerate(CONTROLS):
        yield f"control-{i}-end", name + ch
        yield f"control-{i}-middle", name[:mid] + ch + name[mid:]
    for i, ch in enumerate(SPACES):
        yield f"space-{i}-start", ch + name
        yield f"space-{i}-end", name + ch
    yield "space-both", f" {name} "
    for latin, fakes in HOMOGLYPHS.items():
        if latin in name:
            for j, fake in enumerate(fakes):
                yield f"homoglyph-{latin}-{j}", name.replace(latin, fake, 1)


CASES: list[tuple[str, str, str, str]] = []  # (id, tool, operation, which part is disguised)
for tool, op in DENIED:
    for label, fake in variants(tool):
        CASES.append((f"{tool}/tool/{label}", fake, op, "tool"))
    for label, fake in variants(op):
        CASES.append((f"{tool}/op/{label}", tool, fake, "operation"))


@pytest.fixture(scope="module")
def gov_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, str]]:
    tmp = tmp_path_factory.mktemp("disguise")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    with inprocess_server(f"sqlite:///{tmp / 'faramesh.db'}", policy=policy, rate_limit=None) as srv:
        yield srv, srv.create_key("agent")


def post(srv: InProcessServer, key: str, path: str, tool: str, operation: str) -> httpx.Response:
    # Sent as raw JSON text so controls and odd characters arrive exactly as written.
    payload = json.dumps({"tool": tool, "operation": operation, "params": {"user_id": "u1"}}, ensure_ascii=False)
    return srv.post(
        path,
        content=payload.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"} | auth(key),
        timeout=30,
    )


def assert_not_allowed(r: httpx.Response, label: str) -> str:
    """Refused as invalid, or recognised and denied: never allowed."""
    if r.status_code == 422:
        assert_error(r, 422, "invalid_input")
        return "refused"
    assert r.status_code in (200, 201), f"{label}: {r.status_code} {r.text[:300]}"
    data: dict[str, Any] = r.json()
    decision = data.get("decision")
    status = data.get("status")
    assert status != "allowed" and decision != "allow", f"{label} was allowed: {data}"
    assert data.get("outcome") in (None, "HALT"), f"{label}: {data}"
    return "denied"


def test_the_undisguised_names_are_denied_and_others_allowed(gov_server: tuple[InProcessServer, str]) -> None:
    srv, key = gov_server
    for tool, op in DENIED:
        assert post(srv, key, "/v1/actions", tool, op).json()["status"] == "denied"
    assert post(srv, key, "/v1/actions", "calendar", "create").json()["status"] == "allowed"


@pytest.mark.parametrize(("label", "tool", "operation", "part"), CASES, ids=[c[0] for c in CASES])
def test_disguised_name_is_never_allowed(
    gov_server: tuple[InProcessServer, str], label: str, tool: str, operation: str, part: str
) -> None:
    srv, key = gov_server
    outcome = assert_not_allowed(post(srv, key, "/v1/actions", tool, operation), label)
    # The dry runs agree with the recorded decision.
    assert assert_not_allowed(post(srv, key, "/v1/decide", tool, operation), label) == outcome
    assert assert_not_allowed(post(srv, key, "/v1/gate/decide", tool, operation), label) == outcome


DISGUISE_CHARS = st.sampled_from(ZERO_WIDTH + CONTROLS + SPACES + [c for fakes in HOMOGLYPHS.values() for c in fakes])


@st.composite
def disguised(draw: st.DrawFn, name: str) -> str:
    chars = list(name)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "replace", "case", "width"]))
        i = draw(st.integers(0, len(chars) - 1))
        if kind == "insert":
            chars.insert(i, draw(DISGUISE_CHARS))
        elif kind == "replace":
            chars[i] = draw(DISGUISE_CHARS)
        elif kind == "case":
            chars[i] = chars[i].swapcase()
        else:
            chars[i] = full_width(chars[i])
    return "".join(chars)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_disguises_are_never_allowed(gov_server: tuple[InProcessServer, str], data: st.DataObject) -> None:
    srv, key = gov_server
    tool, op = data.draw(st.sampled_from(DENIED))
    fake_tool = data.draw(disguised(tool) | st.just(tool))
    fake_op = data.draw(disguised(op) | st.just(op))
    assert_not_allowed(post(srv, key, "/v1/decide", fake_tool, fake_op), f"{fake_tool!r}/{fake_op!r}")


def test_stored_names_are_the_normalized_ones(gov_server: tuple[InProcessServer, str]) -> None:
    """What is recorded (and what the audit shows) is the name the policy judged."""
    srv, key = gov_server
    r = post(srv, key, "/v1/actions", full_width("shell"), "run")
    assert r.status_code == 201
    assert r.json()["tool"] == "shell" and r.json()["status"] == "denied"
