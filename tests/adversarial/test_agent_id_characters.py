"""Agent ids: printable characters only (no Unicode category C), decided the same way
on the fast path for printable ASCII as on the character-by-character one."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faramesh.errors import InvalidInput
from faramesh.validation import check_agent_id


def _allowed(value: str) -> bool:
    return all(unicodedata.category(c)[0] != "C" for c in value)


@given(st.text(min_size=1, max_size=40).filter(str.strip))
def test_an_agent_id_is_refused_exactly_when_it_holds_a_category_c_character(value: str) -> None:
    if _allowed(value):
        assert check_agent_id(value) == value
    else:
        with pytest.raises(InvalidInput):
            check_agent_id(value)


@pytest.mark.parametrize("code_point", range(0x80))
def test_every_ascii_character_is_judged_by_its_category(code_point: int) -> None:
    value = "bot-" + chr(code_point)
    if _allowed(value):
        assert check_agent_id(value) == value
    else:  # the controls 0x00-0x1f and 0x7f
        with pytest.raises(InvalidInput, match="printable"):
            check_agent_id(value)


@pytest.mark.parametrize("value", ["bot\u00a0one", "bot\u2028", "bötchen", "agent\u3000x"])
def test_printable_non_ascii_is_still_allowed(value: str) -> None:
    """str.isprintable() refuses these (spaces and separators other than ' '); the rule
    is category C, so they stay valid agent ids."""
    assert check_agent_id(value) == value


@pytest.mark.parametrize("value", ["bot\u200b", "bot\ue000", "bot\u0085", "bot\U000e0001"])
def test_format_private_use_and_control_characters_beyond_ascii_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="printable"):
        check_agent_id(value)
