"""Which votes count toward an action's quorum: the one rule every part of Faramesh uses.

The approve transition decides "quorum reached" with it, and every view (the API's
`approval.counted`, the dashboard's action page and queue, the live feed, Slack) shows
its result instead of counting votes itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def vote_counts(*, approve: Any, vote_hash: str | None, current_hash: str) -> bool:
    """An approval counts only for exactly the arguments it approved: an edit resets the others."""
    return bool(approve) and vote_hash == current_hash


def counted_approvals(votes: Iterable[Any], current_hash: str) -> int:
    """How many of `votes` (rows with `approve` and `request_hash`) count for `current_hash`."""
    return sum(1 for v in votes if vote_counts(approve=v.approve, vote_hash=v.request_hash, current_hash=current_hash))
