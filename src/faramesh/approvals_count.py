"""Moved: the quorum rule lives in `faramesh.service.approvals`; these names stay importable."""

from faramesh.service.approvals import counted_approvals, vote_counts

__all__ = ["counted_approvals", "vote_counts"]
