"""Shadow mode: a candidate policy decides beside the active one, and decides nothing.

The governor evaluates the shadow policy on every submitted action, stores its
decision next to the real one and counts where the two differ. The shadow
decision never changes the action's status, never reserves limits, and an
error in it is recorded as ``"error"`` rather than raised.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faramesh.policy import Policy

log = logging.getLogger("faramesh.shadow")

ERROR = "error"


@dataclass(frozen=True)
class ShadowDecision:
    decision: str  # allow | deny | require_approval | error
    rule_id: str | None
    policy_hash: str

    def diverges_from(self, active: str) -> bool:
        return self.decision != active


def shadow_decide(
    policy: Policy,
    *,
    tool: str,
    operation: str,
    params: Mapping[str, Any],
    context: Mapping[str, Any],
    agent: Mapping[str, Any],
    now: datetime,
) -> ShadowDecision:
    """The shadow policy's decision; never raises."""
    try:
        d = policy.evaluate(tool=tool, operation=operation, params=params, context=context, agent=agent, now=now)
    except Exception:  # the candidate must never break a real decision
        log.exception("shadow policy evaluation failed")
        return ShadowDecision(ERROR, None, policy.hash)
    return ShadowDecision(d.effect.value, d.rule_id, policy.hash)


class ShadowStats:
    """Counts of shadow decisions since the shadow policy was (re)loaded, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.diverged = 0
        self.pairs: Counter[tuple[str, str]] = Counter()  # (active, shadow) -> count

    def record(self, active: str, shadow: str) -> None:
        with self._lock:
            self.total += 1
            if active != shadow:
                self.diverged += 1
            self.pairs[(active, shadow)] += 1

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.diverged = 0
            self.pairs.clear()

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "diverged": self.diverged,
                "pairs": [
                    {"active": active, "shadow": shadow, "count": count}
                    for (active, shadow), count in sorted(self.pairs.items())
                ],
            }
