"""The action lifecycle: the only code that changes state.

`Governor` (governor.py) is the facade every caller uses. What it decides is in small
modules named after it:

- submit.py: validate, evaluate, reserve limits, record (agents.py: whose action it is)
- approvals.py: approve and deny, and the one rule of which votes count toward a quorum
- results.py: the agent's report of how an action went
- expiry.py: denying actions whose approval window passed
- limits.py: rate limits and budgets
- keys.py, webhooks.py: creating and removing API keys and stored webhooks
- reads.py: one action, a page of actions, an action's events
- views.py: the wire format (`to_api`), the only place it is built

They reach actions, keys, limits, stored webhooks and the audit log through the typed
repositories (`faramesh.storage.repositories.Repositories.sql(conn)`); the SQL behind
them, and behind approvals, grants and the rest, is in faramesh.storage.
"""

from faramesh.service.agents import PLACEHOLDER_AGENT_ID
from faramesh.service.approvals import MAX_REASON, counted_approvals, vote_counts
from faramesh.service.governor import Governor
from faramesh.service.limits import bucket_id
from faramesh.service.submit import MAX_IDEMPOTENCY_KEY, Submission
from faramesh.service.views import GATE_OUTCOMES, iso, to_api

__all__ = [
    "GATE_OUTCOMES",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_REASON",
    "PLACEHOLDER_AGENT_ID",
    "Governor",
    "Submission",
    "bucket_id",
    "counted_approvals",
    "iso",
    "to_api",
    "vote_counts",
]
