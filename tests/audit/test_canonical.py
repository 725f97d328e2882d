"""One canonical JSON form: the reference encoder, its orjson fast path and the scalar
encoders all give the bytes the documented rules give."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from faramesh import audit, canonical
from faramesh.canonical import (
    NonCanonicalValue,
    canonical_json,
    canonical_number,
    canonical_str,
    fast_canonical,
)


def spec(value: Any) -> str:
    """The rules in canonical.py's docstring, written out independently: sorted keys, no
    whitespace, raw non-ASCII, integral floats as integers, other floats positional."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        if value == int(value):
            return str(int(value))
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{spec(k)}:{spec(value[k])}" for k in sorted(value)) + "}"
    return "[" + ",".join(spec(v) for v in value) + "]"


big_ints = st.integers(min_value=2**63 - 2, max_value=2**80) | st.integers(min_value=-(2**80), max_value=-(2**63) + 2)
ints = st.integers() | big_ints
floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1.0, -1.0, 1e20, -0.0, 0.0, 1e16, 1.5e16, 1e-7, 5e-324, 0.1, 2.5, 1.7976931348623157e308, 123456789.125]
)
texts = st.text() | st.sampled_from(["é", "日本語", "𝄞", "\u2028", "\x7f", '"\\', "\x00\n\t", "ascii"])
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda children: (
        st.lists(children, max_size=5) | st.tuples(children, children) | st.dictionaries(texts, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(value=json_values)
@example({"a": 1.0, "b": [1e20, -0.0, 2**64, -(2**70)], "ü": {"𝄞": "naïve", "n": None}})
@example([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64 + 0.5])
def test_fast_canonical_is_byte_identical_to_canonical_json(value: Any) -> None:
    reference = canonical_json(value)
    assert fast_canonical(value) == reference
    assert reference == spec(value).encode("utf-8")
    # A value parsed back from canonical text (no NaN possible) takes the single-pass path.
    parsed = audit._loads_exact(reference)
    assert fast_canonical(parsed, may_hold_nan=False) == reference


@settings(max_examples=1000, deadline=None)
@given(number=ints | floats)
def test_scalar_encoders_agree_with_the_reference(number: float) -> None:
    assert canonical_number(number) == canonical_json(number).decode() == spec(number)


@settings(max_examples=500, deadline=None)
@given(text=texts | st.none())
def test_string_encoder_agrees_with_the_reference(text: str | None) -> None:
    assert canonical_str(text) == canonical_json(text).decode() == spec(text)


@pytest.mark.parametrize("value", [math.nan, -math.inf, [1, {"x": math.inf}], {1: "a"}, {"s": {1, 2}}, b"x"])
def test_both_encoders_refuse_what_has_no_canonical_form(value: Any) -> None:
    with pytest.raises(NonCanonicalValue):
        canonical_json(value)
    with pytest.raises(NonCanonicalValue):
        fast_canonical(value)


def test_bool_is_not_a_number() -> None:
    assert canonical_number(True) == "true"
    assert fast_canonical([True, 1, 1.0]) == canonical_json([True, 1, 1.0]) == b"[true,1,1]"


def test_there_is_one_encoder_and_audit_uses_it() -> None:
    assert audit.fast_canonical is canonical.fast_canonical
