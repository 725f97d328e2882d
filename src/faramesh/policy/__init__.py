"""Faramesh policies: YAML rules compiled once, evaluated purely.

>>> from faramesh.policy import Policy
>>> policy = Policy.from_yaml('''
... rules:
...   - match: {tool: refund, operation: process, amount_gt: 100}
...     require_approval: true
...     reason: Large refunds need approval
...     risk: high
... ''')
>>> policy.evaluate(tool="refund", operation="process", params={"amount": 150}, context={}).effect.value
'require_approval'
"""

from .errors import PolicyError, PolicyProblem
from .model import ApprovalSpec, BudgetSpec, Decision, Effect, LimitSpec, RateLimitSpec, Rule
from .policy import Explanation, Policy, Recorder, RuleTrace, load_starter_policy

__all__ = [
    "ApprovalSpec",
    "BudgetSpec",
    "Decision",
    "Effect",
    "Explanation",
    "LimitSpec",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "RateLimitSpec",
    "Recorder",
    "Rule",
    "RuleTrace",
    "load_starter_policy",
]
