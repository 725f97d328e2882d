"""The fast record encoding used by verify and export equals the canonical JSON form."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faramesh import audit
from faramesh.canonical import NonCanonicalValue, canonical_json

texts = st.text()  # any code point except lone surrogates (which are not UTF-8)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)
timestamps = st.one_of(
    finite_floats,
    st.floats(min_value=0, max_value=4e9),
    st.integers(min_value=0, max_value=2**53),
    st.sampled_from([0.0, -0.0, 1.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 1700000000.123456]),
)
names = st.one_of(st.none(), texts, st.sampled_from(["action.submitted", "key:0123 (alice)", 'quote " and \\']))


@settings(max_examples=400, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    ts=timestamps,
    event=texts,
    action_id=names,
    actor=names,
    data=json_values,
)
def test_record_bytes_equal_canonical_json_of_the_record(
    seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data: Any
) -> None:
    body = audit.record_body(seq=seq, ts=ts, event=event, action_id=action_id, actor=actor, data=data)
    data_json = canonical_json(data).decode("utf-8")
    fast = audit.record_bytes(seq=seq, ts=ts, event=event, action_id=action_id, actor=actor, data_json=data_json)
    assert fast == canonical_json(body)
    assert audit.chain_hash("ab" * 32, fast) == audit.record_hash("ab" * 32, body)


@settings(max_examples=400, deadline=None)
@given(value=json_values)
def test_fast_canonical_equals_canonical_json(value: Any) -> None:
    assert audit.fast_canonical(value) == canonical_json(value)
    # What verifying an exported file does: parse the text back and encode it again.
    assert audit.fast_canonical(audit._loads_exact(canonical_json(value))) == canonical_json(value)


@settings(max_examples=2000, deadline=None)
@given(number=st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(2**80), max_value=2**80))
def test_fast_canonical_writes_every_number_canonically(number: float) -> None:
    # Integral floats, exponents, tiny and huge values: orjson's text must be rewritten exactly.
    assert audit.fast_canonical([number, {"n": number}]) == canonical_json([number, {"n": number}])


@pytest.mark.parametrize(
    "value",
    [
        {"amount": 1.0, "nested": [1e16, 1.5e-7, -0.0, 12.5, 2**70]},
        {"é": '\u2028\x7f\x00\n\t"\\', "𝄞": "\ud7ff\ue000\U0010ffff"},
        [True, False, None, 0, -1, 2**64, -(2**63) - 1],
        "1.5e3 inside a string stays a string",
        ("a", 1.5),
    ],
)
def test_fast_canonical_edge_cases(value: Any) -> None:
    assert audit.fast_canonical(value) == canonical_json(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
def test_non_finite_numbers_have_no_canonical_form(value: Any) -> None:
    with pytest.raises(NonCanonicalValue):
        audit.fast_canonical(value)


@pytest.mark.parametrize("ts", [math.nan, math.inf])
def test_a_record_with_a_non_finite_time_cannot_be_sealed(ts: float) -> None:
    with pytest.raises(NonCanonicalValue):
        audit.seal(audit.GENESIS_HASH, seq=1, ts=ts, event="x", action_id=None, actor=None, data={})


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=2**53),
    ts=timestamps,
    event=texts,
    action_id=names,
    actor=names,
    data=json_values,
)
def test_export_line_is_canonical_json_and_parses_back(
    seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data: Any
) -> None:
    row = audit.seal("cd" * 32, seq=seq, ts=ts, event=event, action_id=action_id, actor=actor, data=data)
    line = audit.export_line(
        seq=seq,
        ts=ts,
        event=event,
        action_id=action_id,
        actor=actor,
        data_json=row["data"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
    record = {**audit.record_body(seq=seq, ts=ts, event=event, action_id=action_id, actor=actor, data=data)}
    assert line == canonical_json(record | {"prev_hash": row["prev_hash"], "hash": row["hash"]}) + b"\n"
    parsed = audit.parse_export_line(line)
    assert parsed[0] == seq and parsed[2:] == (event, action_id, actor, row["data"], row["prev_hash"], row["hash"])
    report = audit.verify_lines([line], partial=True)
    assert report.ok, [p.line() for p in report.problems]


def _chain(n: int) -> list[bytes]:
    prev, lines = audit.GENESIS_HASH, []
    for seq in range(1, n + 1):
        row = audit.seal(
            prev, seq=seq, ts=1.5 + seq, event="e", action_id=f"a{seq % 3}", actor="t", data={"i": seq, "f": seq / 4}
        )
        lines.append(audit.export_line(**{k: v for k, v in row.items() if k != "data"}, data_json=row["data"]))
        prev = row["hash"]
    return lines


def test_sealed_records_form_a_chain_from_genesis() -> None:
    lines = _chain(50)
    report = audit.verify_lines(lines)
    assert report.ok and report.records == 50 and report.anchored
    assert report.last_hash == orjson.loads(lines[-1])["hash"]


def test_a_chain_that_does_not_start_at_genesis_is_refused_unless_partial() -> None:
    lines = _chain(10)[3:]
    report = audit.verify_lines(lines)
    assert [p.line() for p in report.problems] == [
        "audit chain broken at seq 1: records 1..3 are missing: the log starts at seq 4 — records were deleted"
    ]
    assert audit.verify_lines(lines, partial=True).ok


@pytest.mark.parametrize("text", ["", "12", "12:", ":" + "a" * 64, "x:" + "a" * 64, "1:" + "g" * 64, "1:" + "a" * 63])
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SEQ:HASH"):
        audit.Checkpoint.parse(text)


def test_checkpoints_parse() -> None:
    cp = audit.Checkpoint.parse(" 12:" + "AB" * 32 + "\n")
    assert (cp.seq, cp.hash, str(cp)) == (12, "ab" * 32, "12:" + "ab" * 32)


def test_exported_integers_beyond_64_bits_stay_exact() -> None:
    row = audit.seal(
        audit.GENESIS_HASH, seq=1, ts=2.5, event="e", action_id=None, actor=None, data={"n": 2**70, "m": -(2**63) - 1}
    )
    line = audit.export_line(**{k: v for k, v in row.items() if k != "data"}, data_json=row["data"])
    report = audit.verify_lines([line])
    assert report.ok, [p.line() for p in report.problems]


def test_exported_line_with_nan_is_not_a_record() -> None:
    line = audit.export_line(
        seq=1,
        ts=2.5,
        event="e",
        action_id=None,
        actor=None,
        data_json='{"n":NaN,"id":1234567890123456789}',
        prev_hash=audit.GENESIS_HASH,
        hash="00" * 32,
    )
    report = audit.verify_lines([line])
    assert report.problems[0].line().startswith("audit chain broken: line 1 is not an audit record: not valid JSON")
