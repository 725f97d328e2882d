"""Stateful limits (rate limits and budgets): whether one trips, decided and recorded in
the submit transaction (and again for an approver's edited arguments)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faramesh.canonical import fast_canonical, sha256_hex
from faramesh.durations import humanize
from faramesh.policy import BudgetSpec, Decision
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import NUL, SHOWN, shown

# limit_usage.bucket is VARCHAR(250); a key value longer than that was never stored raw.
_LEGACY_BUCKET_MAX = 250


def bucket_id(value: str) -> str:
    """The stored bucket of a limit key's value: a fixed-length digest of its canonical
    JSON, so any value (however long, whatever it holds) fits the column."""
    return "sha256:" + sha256_hex(fast_canonical(value))


def _shown_key(value: str) -> str:
    # The key as quoted in a reason: short values as before, long ones cut.
    return value if len(value) <= SHOWN else shown(value)


def reserve(
    conn: Connection,
    decision: Decision,
    *,
    params: Mapping[str, Any],
    context: Mapping[str, Any],
    agent: Mapping[str, Any],
    action_id: str,
    now: float,
) -> str | None:
    """Check and record the decision's limits in the caller's transaction; a reason if one trips."""
    repos = Repositories.sql(conn)
    keys = [(spec, spec.key_value(params=params, context=context, agent=agent)) for spec in decision.limits]
    repos.limits.lock_buckets(f"{spec.limit_id}:{bucket_id(v)}" for spec, v in keys if v is not None)
    for spec, value in keys:
        if value is None:
            return f"Limit {spec.limit_id}: the key {spec.key} is missing, so the limit cannot be checked"
        bucket = bucket_id(value)
        # Usage recorded before buckets were digests was keyed by the value itself;
        # it is counted too until it ages out of the window (no migration needed).
        keyed = [bucket, value] if len(value) <= _LEGACY_BUCKET_MAX and NUL not in value else [bucket]
        count, total = repos.limits.usage(limit_id=spec.limit_id, buckets=keyed, since=now - spec.per_seconds)
        window = humanize(spec.per_seconds)
        if isinstance(spec, BudgetSpec):
            amount = spec.amount(params)
            if amount is None:
                return f"Budget {spec.limit_id}: {spec.sum_field} is missing or not a number"
            if total + amount > spec.max:
                return f"Budget exceeded: {total + amount:g} of {spec.max:g} per {window} for {_shown_key(value)}"
        else:
            amount = 1.0
            if count + 1 > spec.max:
                return f"Rate limit exceeded: {spec.max} per {window} for {_shown_key(value)}"
        repos.limits.record(limit_id=spec.limit_id, bucket=bucket, amount=amount, action_id=action_id, at=now)
    return None
