"""One reading of a duration for policies, grants, replay windows and the server's settings."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from faramesh.cli.main import main as cli
from faramesh.config import Settings
from faramesh.config import parse_duration as setting
from faramesh.durations import DurationError, humanize, parse_duration
from faramesh.policy import Policy, PolicyError, RateLimitSpec
from faramesh.policy.timing import TimingError
from faramesh.policy.timing import parse_duration as policy_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        (" 2H ", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("1m500ms", 60.5),
    ],
)
def test_every_reader_gives_the_same_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert policy_duration(text) == seconds
    assert setting(text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["inf", "nan", "1e3", "-5", "0", "0s", "5x", "1y", "1:30", "m", "", True, [1]])
def test_what_one_reader_refuses_every_reader_refuses(text: object) -> None:
    """'inf' and '1e3' were read as numbers by the settings alone: an approval timeout of
    'inf' seconds was accepted there and refused in a policy."""
    if text != "":  # an empty setting means "the default", the only difference
        with pytest.raises(DurationError):
            parse_duration(text)
        with pytest.raises(ValueError, match="use a number of seconds"):
            setting(text)  # type: ignore[arg-type]
    with pytest.raises(TimingError):
        policy_duration(text)


def test_an_empty_setting_is_the_default() -> None:
    assert setting("") is None
    assert setting(None) is None
    assert Settings.from_env({"FARAMESH_PERMIT_TTL": "1h30m"}).permit_ttl == 5400.0


def test_a_bad_setting_names_its_option_and_what_is_accepted() -> None:
    result = CliRunner().invoke(cli, ["serve", "--permit-ttl", "inf"])
    assert result.exit_code == 2
    assert "--permit-ttl" in result.output and "invalid duration 'inf'" in result.output
    assert "1h30m" in result.output


def test_a_policy_reads_compound_durations_and_milliseconds() -> None:
    policy = Policy.from_yaml("rules:\n  - match: {tool: t}\n    allow: true\n    rate_limit: {max: 5, per: 1m500ms}\n")
    (limit,) = policy.rules[0].limits
    assert isinstance(limit, RateLimitSpec) and limit.per_seconds == 60.5
    with pytest.raises(PolicyError, match="invalid duration"):
        Policy.from_yaml("rules:\n  - match: {tool: t}\n    allow: true\n    rate_limit: {max: 5, per: inf}\n")


@given(st.integers(min_value=1, max_value=10**9) | st.integers(min_value=1, max_value=10**9).map(lambda n: n / 1000))
def test_what_is_written_reads_back(seconds: float) -> None:
    """A reason's duration reads back as what it says (it once wrote 1e+06s)."""
    assert parse_duration(humanize(seconds)) == pytest.approx(seconds, abs=1e-9)
