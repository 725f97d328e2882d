"""Tools for people who write policies; each is a Python function and a `faramesh policy` command.

- :func:`validate_file` — every problem with line, column, key and fix;
- :func:`lint` — warnings a reviewer needs (unreachable rules, risky regular expressions, …);
- :func:`load_cases_file` / :func:`run_cases` — fixture cases and their pass/fail report;
- :func:`explain` — the decision and, for each rule considered, each condition's result and why;
- :func:`diff_policies` — what changed, rule by rule;
- :func:`replay` — re-decide stored actions with a candidate policy;
- :func:`prove` — prove a claim over every possible action, or give a counter-example;
- :func:`with_grants` — a policy as the server applies it with standing grants (for replay and prove).
"""

from .cases import Case, CaseReport, CasesError, load_cases, load_cases_file, run_cases
from .diff import PolicyDiff, diff_policies
from .explain import DetailedExplanation, explain
from .grants import GrantsError, load_grants, with_grants
from .lint import Finding, lint
from .prove import Claim, ClaimError, ProofResult, parse_claim, prove
from .replay import ReplayError, ReplayReport, Since, parse_since, replay
from .validate import ValidationResult, validate_file, validate_text

__all__ = [
    "Case",
    "CaseReport",
    "CasesError",
    "Claim",
    "ClaimError",
    "DetailedExplanation",
    "Finding",
    "GrantsError",
    "PolicyDiff",
    "ProofResult",
    "ReplayError",
    "ReplayReport",
    "Since",
    "ValidationResult",
    "diff_policies",
    "explain",
    "lint",
    "load_cases",
    "load_cases_file",
    "load_grants",
    "parse_claim",
    "parse_since",
    "prove",
    "replay",
    "run_cases",
    "validate_file",
    "validate_text",
    "with_grants",
]
