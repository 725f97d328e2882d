"""`during` windows: days, hours, time zones, and no match without a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from faramesh.policy import Effect, Policy


def window_policy(during: str) -> Policy:
    return Policy.from_yaml(
        f"default: deny\nrules:\n  - id: office\n    match: {{tool: deploy}}\n    during: {during}\n    allow: true\n"
    )


def decide(policy: Policy, now: datetime | None) -> Effect:
    return policy.evaluate(tool="deploy", operation="run", params={}, context={}, now=now).effect


# 2024-01-01 was a Monday.
MON = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (MON.replace(hour=9), Effect.ALLOW),
        (MON.replace(hour=16, minute=59, second=59), Effect.ALLOW),
        (MON.replace(hour=17), Effect.DENY),  # the end is exclusive
        (MON.replace(hour=8, minute=59), Effect.DENY),
        (MON + timedelta(days=4, hours=12), Effect.ALLOW),  # Friday noon
        (MON + timedelta(days=5, hours=12), Effect.DENY),  # Saturday noon
        (MON + timedelta(days=6, hours=12), Effect.DENY),  # Sunday noon
    ],
)
def test_office_hours_in_utc(when: datetime, expected: Effect) -> None:
    policy = window_policy("{days: mon-fri, hours: '09:00-17:00'}")
    assert decide(policy, when) is expected


def test_no_time_means_the_rule_does_not_match() -> None:
    allow_in_hours = window_policy("{days: mon-fri, hours: '09:00-17:00'}")
    assert decide(allow_in_hours, None) is Effect.DENY
    deny_in_hours = Policy.from_yaml(
        "default: allow\nrules:\n  - match: {tool: deploy}\n    during: {hours: '00:00-24:00'}\n    deny: true\n"
    )
    assert decide(deny_in_hours, MON) is Effect.DENY
    assert decide(deny_in_hours, None) is Effect.ALLOW  # documented: always pass `now`


def test_time_zone_with_daylight_saving() -> None:
    policy = window_policy("{days: mon-fri, hours: '09:00-17:00', tz: Europe/Berlin}")
    # winter: Berlin is UTC+1
    assert decide(policy, datetime(2024, 1, 2, 8, 0, tzinfo=UTC)) is Effect.ALLOW  # 09:00 Berlin
    assert decide(policy, datetime(2024, 1, 2, 7, 59, tzinfo=UTC)) is Effect.DENY
    assert decide(policy, datetime(2024, 1, 2, 16, 0, tzinfo=UTC)) is Effect.DENY  # 17:00 Berlin
    # summer: Berlin is UTC+2
    assert decide(policy, datetime(2024, 7, 2, 7, 0, tzinfo=UTC)) is Effect.ALLOW  # 09:00 Berlin
    assert decide(policy, datetime(2024, 7, 2, 15, 0, tzinfo=UTC)) is Effect.DENY  # 17:00 Berlin
    # the day is the local day: Friday 23:30 UTC is Saturday in Berlin
    assert decide(window_policy("{days: fri, tz: Europe/Berlin}"), datetime(2024, 1, 5, 23, 30, tzinfo=UTC)) is (
        Effect.DENY
    )
    # other offsets are converted too
    est = timezone(timedelta(hours=-5))
    assert decide(policy, datetime(2024, 1, 2, 3, 0, tzinfo=est)) is Effect.ALLOW  # 08:00 UTC, 09:00 Berlin


def test_naive_time_is_utc() -> None:
    policy = window_policy("{hours: '09:00-10:00'}")
    assert decide(policy, datetime(2024, 1, 1, 9, 30)) is Effect.ALLOW
    assert decide(policy, datetime(2024, 1, 1, 10, 30)) is Effect.DENY


def test_overnight_hours() -> None:
    policy = window_policy("{hours: '22:00-06:00'}")
    assert decide(policy, MON.replace(hour=23)) is Effect.ALLOW
    assert decide(policy, MON.replace(hour=2)) is Effect.ALLOW
    assert decide(policy, MON.replace(hour=6)) is Effect.DENY
    assert decide(policy, MON.replace(hour=12)) is Effect.DENY


def test_hours_up_to_midnight() -> None:
    policy = window_policy("{hours: '18:00-24:00'}")
    assert decide(policy, MON.replace(hour=23, minute=59)) is Effect.ALLOW
    assert decide(policy, MON.replace(hour=0)) is Effect.DENY


@pytest.mark.parametrize(
    ("days", "allowed"),
    [
        ("mon-fri", "mon tue wed thu fri"),
        ("weekdays", "mon tue wed thu fri"),
        ("weekends", "sat sun"),
        ("fri-mon", "mon fri sat sun"),  # wraps around the week
        ("'sat,sun'", "sat sun"),
        ("[mon, wed-thu]", "mon wed thu"),
        ("[Monday, SUNDAY]", "mon sun"),
        ("wed", "wed"),
    ],
)
def test_day_specs(days: str, allowed: str) -> None:
    policy = window_policy(f"{{days: {days}}}")
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    got = [names[i] for i in range(7) if decide(policy, MON + timedelta(days=i, hours=12)) is Effect.ALLOW]
    assert got == allowed.split()


def test_extreme_datetimes_do_not_raise() -> None:
    policy = window_policy("{days: mon-sun, tz: Pacific/Kiritimati}")
    assert decide(policy, datetime.max.replace(tzinfo=UTC)) is Effect.DENY
    assert decide(policy, datetime.min.replace(tzinfo=UTC)) in (Effect.ALLOW, Effect.DENY)


def test_window_is_part_of_the_rule_description() -> None:
    policy = window_policy("{days: [fri, mon-tue], hours: '9:30-17:00', tz: Europe/Berlin}")
    assert policy.rules[0].to_dict()["during"] == {
        "days": ["mon", "tue", "fri"],
        "hours": "09:30-17:00",
        "tz": "Europe/Berlin",
    }
