"""The policy from the "Govern Your Own Tool" guide, shared by the policy tests."""

SEED_POLICY = """\
rules:
  - match:
      tool: "refund"
      operation: "process"
      amount_gt: 100
    require_approval: true
    reason: "Large refunds need approval"
    risk: high
  - match:
      tool: "refund"
      operation: "process"
      amount_lte: 100
    allow: true
    reason: "Small refunds allowed"
    risk: low
"""
