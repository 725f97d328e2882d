"""Table definitions (SQLAlchemy Core). Alembic migrations create them; queries use them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# BigInteger on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

actions = Table(
    "actions",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("status", String(32), nullable=False),
    Column("decision", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("risk_level", String(16), nullable=False),
    Column("rule_id", String(200)),
    Column("policy_hash", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("tool", String(128), nullable=False),
    Column("operation", String(128), nullable=False),
    Column("params", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("original_params", Text),  # JSON; set when an approver approved edited params
    Column("agent_id", String(200), nullable=False),
    # What a shadow (candidate) policy would have decided; null without one. Never used to decide.
    Column("shadow_decision", String(32)),
    Column("shadow_rule_id", String(200)),
    Column("shadow_policy_hash", String(64)),
    Column("submitted_by", String(64), nullable=False),  # api key id of the submitter
    Column("idempotency_key", String(200)),
    Column("approval_token", String(64)),
    Column("approval_quorum", Integer, nullable=False, default=1),
    Column("approval_groups", Text),  # JSON list, null = any approver
    Column("expires_at", Float),
    Column("decided_by", Text),
    Column("decision_reason", Text),
    Column("result", Text),  # JSON
    Column("error", Text),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("submitted_hash", String(64)),  # request hash as submitted (re-attach matches on it)
    Column("agent_seen_at", Float),  # when the submitting agent last waited (presence)
    Column("picked_up_at", Float),  # when the submitting agent first saw the approval
    Column("lapses_at", Float),  # an approval not picked up by then is cancelled
    Column("permit", Text),  # the permit last issued (compact JWS); see service/permits.py
    Column("permit_expires_at", Float),  # its exp
    Column("started_at", Float),  # when the agent took its single-use start
    Column("lease_expires_at", Float),  # a start with no result by then: outcome_unknown
    UniqueConstraint("submitted_by", "idempotency_key", name="uq_actions_idempotency"),
)
Index("ix_actions_status_seq", actions.c.status, actions.c.seq)
Index("ix_actions_tool_seq", actions.c.tool, actions.c.seq)
Index("ix_actions_agent_seq", actions.c.agent_id, actions.c.seq)
Index("ix_actions_submitter_seq", actions.c.submitted_by, actions.c.seq)
Index("ix_actions_risk_seq", actions.c.risk_level, actions.c.seq)
Index("ix_actions_created", actions.c.created_at)
Index("ix_actions_reattach", actions.c.submitted_hash, actions.c.status)


def _deadline_index(name: str, deadline: Column[Any]) -> Index:
    """One of the sweeper's indexes: partial, over the rows that have the deadline (most
    actions never do, and a submit then writes no entry to it)."""
    where = deadline.is_not(None)
    return Index(name, actions.c.status, deadline, sqlite_where=where, postgresql_where=where)


_deadline_index("ix_actions_pending_expiry", actions.c.expires_at)
_deadline_index("ix_actions_lapse", actions.c.lapses_at)
_deadline_index("ix_actions_lease", actions.c.lease_expires_at)

# The Ed25519 keys that sign permits, shared by every replica (see service/permit_keys.py).
permit_keys = Table(
    "permit_keys",
    metadata,
    Column("kid", String(64), primary_key=True),  # RFC 7638 thumbprint of the public key
    Column("public_jwk", Text, nullable=False),  # JSON
    Column("private_key", Text, nullable=False),  # encrypted under the server secret (Fernet)
    Column("secret_id", String(32), nullable=False),  # which secret encrypted it
    Column("active", Integer),  # 1: the key that signs now; NULL: retired
    Column("created_at", Float, nullable=False),
    Column("retired_at", Float),
    Column("publish_until", Float),  # a retired key stays in the JWKS until its permits expired
    UniqueConstraint("active", name="uq_permit_keys_active"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("approver", String(64), nullable=False),  # api key id, or a person's id (person:…)
    Column("approver_label", Text, nullable=False),
    Column("approver_person", Text),  # JSON {issuer, subject, email, name} for a person; null for a key
    Column("approve", Boolean, nullable=False),
    Column("reason", Text),
    Column("request_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    # One vote per approver for each exact set of arguments (see approve-with-changes).
    UniqueConstraint("action_id", "approver", "request_hash", name="uq_approvals_action_approver_hash"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", Text, nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("agent_id", String(200)),
    Column("groups", Text, nullable=False, default="[]"),  # JSON list
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("action_id", String(64)),
    Column("actor", Text),
    Column("data", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_action", audit_log.c.action_id, audit_log.c.seq)

# One row (id = 1): the head of the audit chain. Appenders lock it, so the chain
# stays a single line even with several server processes on one database.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", SeqType, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Usage recorded for stateful policy limits (rate limits and budgets).
limit_usage = Table(
    "limit_usage",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("limit_id", String(250), nullable=False),
    Column("bucket", String(250), nullable=False),
    Column("amount", Float, nullable=False),
    Column("action_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
)
Index("ix_limit_usage_lookup", limit_usage.c.limit_id, limit_usage.c.bucket, limit_usage.c.at)

# Outgoing webhooks added through the admin API (file-configured ones live in memory).
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),  # kept in clear: it signs every delivery
    Column("events", Text, nullable=False),  # JSON list of event types, or ["*"]
    Column("format", String(16), nullable=False),  # json | slack
    Column("description", Text, nullable=False, default=""),
    Column("created_by", Text),
    Column("created_at", Float, nullable=False),
)

# One row per (event, webhook): the delivery log and the retry queue.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("webhook_id", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("event_seq", BigInteger, nullable=False),  # the audit record's seq
    Column("action_id", String(64)),
    Column("payload", Text, nullable=False),  # the exact body sent on every attempt
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("next_attempt_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    # One delivery per event and receiver, however many server processes saw the event.
    UniqueConstraint("webhook_id", "event_seq", name="uq_webhook_deliveries_event"),
)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_deliveries_webhook", webhook_deliveries.c.webhook_id, webhook_deliveries.c.id)

# Standing grants: an approver's permission for held actions that meet conditions, for a while.
grants = Table(
    "grants",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tool", String(128), nullable=False),
    Column("operation", String(128), nullable=False),
    Column("agent_id", String(200)),  # null: any agent
    Column("conditions", Text, nullable=False),  # JSON object of params conditions (policy operators)
    Column("reason", Text, nullable=False),
    Column("created_by", String(64), nullable=False),  # api key id
    Column("created_by_label", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("max_uses", Integer),  # null: no limit but the expiry
    Column("uses", Integer, nullable=False, default=0),
    Column("revoked_at", Float),
    Column("revoked_by", Text),
    Column("action_id", String(64)),  # the action it was granted from, if any
)
Index("ix_grants_lookup", grants.c.tool, grants.c.operation, grants.c.expires_at)

# One row per reminder or escalation of a held action: each goes out once.
approval_nudges = Table(
    "approval_nudges",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # reminder | escalation
    Column("at", Float, nullable=False),
    UniqueConstraint("action_id", "kind", name="uq_approval_nudges_action_kind"),
)

# Where a held action was posted in chat, so the message can be updated after the decision.
chat_messages = Table(
    "chat_messages",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("ts", String(32)),  # null while the message is being posted
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("action_id", "channel", name="uq_chat_messages_action_channel"),
)

# People who signed in to the dashboard with single sign-on (OpenID Connect): one row per
# issuer and subject, holding what the provider said at the last sign-in or re-check.
people = Table(
    "people",
    metadata,
    Column("id", String(64), primary_key=True),  # person:<digest of issuer and subject>
    Column("issuer", Text, nullable=False),
    Column("subject", String(500), nullable=False),
    Column("email", String(500)),
    Column("email_verified", Boolean, nullable=False, default=False),
    Column("name", Text, nullable=False, default=""),
    Column("role", String(16)),  # null: in no mapped group now, so no access
    Column("groups", Text, nullable=False, default="[]"),  # JSON list
    Column("created_at", Float, nullable=False),
    Column("checked_at", Float, nullable=False),  # when the provider last confirmed the groups
)
Index("ix_people_email", people.c.email)

# Dashboard sessions of people (API key sessions live in the cookie alone). The cookie
# holds a random id; only its SHA-256 is stored. Tokens are sealed with the secret key.
person_sessions = Table(
    "person_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the cookie's session id
    Column("person_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("checked_at", Float, nullable=False),  # last re-check of the groups with the provider
    Column("tokens", Text),  # sealed JSON: refresh, access and ID tokens
    Column("ended_at", Float),
    Column("ended_reason", Text),
    Column("version", Integer, nullable=False, default=1),
)
Index("ix_person_sessions_person", person_sessions.c.person_id)
Index("ix_person_sessions_expiry", person_sessions.c.expires_at)

GENESIS_HASH = "0" * 64
