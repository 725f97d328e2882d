"""`Governor`: the facade over the action lifecycle. This is the only door to state.

It holds what the modules share (the store, the active and shadow policies, the event
hub, the clock, telemetry) and turns what they wrote into events and API views. Every
transition is a compare-and-set on the stored row (UPDATE ... WHERE id = ? AND status = ?)
and appends its audit record in the same transaction. A transition that finds the row in
another status raises Conflict carrying the current status, so of two racing requests
exactly one wins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from faramesh import audit
from faramesh.config import DEFAULT_EXECUTION_LEASE, DEFAULT_PERMIT_TTL
from faramesh.events import ChangeEvent, EventHub, decision_details
from faramesh.keys import KeyInfo
from faramesh.model import Identity, Role, Status
from faramesh.observability import Telemetry
from faramesh.policy import Decision, Policy
from faramesh.service import (
    access,
    agents,
    approvals,
    cancel,
    execution,
    expiry,
    grants,
    keys,
    nudges,
    people,
    permit_keys,
    permits,
    presence,
    reads,
    results,
    submit,
    views,
    webhooks,
)
from faramesh.service.expiry import DEFAULT_APPROVAL_LAPSE, DEFAULT_APPROVAL_TIMEOUT
from faramesh.service.key_cache import KeyCache
from faramesh.service.submit import Submission, Submitted
from faramesh.shadow import ShadowStats
from faramesh.sso import SsoConfig
from faramesh.storage import Store

log = logging.getLogger("faramesh.service")


class Governor:
    """Submit, decide, report. Thread-safe; every method runs its own transaction."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        hub: EventHub | None = None,
        approval_timeout: float | None = DEFAULT_APPROVAL_TIMEOUT,
        approval_lapse: float | None = DEFAULT_APPROVAL_LAPSE,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
        shadow_policy: Policy | None = None,
        permit_ttl: float = DEFAULT_PERMIT_TTL,
        execution_lease: float = DEFAULT_EXECUTION_LEASE,
        secret_key: str | None = None,
    ) -> None:
        self.store = store
        self._policy = policy
        self._policy_loaded_at = clock()
        self._policy_lock = threading.Lock()
        self.hub = hub or EventHub()
        # Verified API keys, remembered briefly; a revocation heard by the hub evicts at once.
        self.key_cache = KeyCache()
        self.hub.on_revoke(lambda key_id: self.key_cache.evict_key(key_id))
        # Seconds a held action waits for people when its rule sets none (None: forever,
        # only when configured so), and an approval nobody picked up stays valid.
        self.approval_timeout = approval_timeout
        self.approval_lapse = approval_lapse
        self.clock = clock
        self.telemetry = telemetry or Telemetry()
        # A candidate policy evaluated beside the active one; it never decides anything.
        self._shadow = shadow_policy
        self._shadow_loaded_at = clock() if shadow_policy is not None else None
        self.shadow_stats = ShadowStats()
        # Seconds a permit stays valid, and a started action may run without a result or heartbeat.
        self.permit_ttl = permit_ttl
        self.execution_lease = execution_lease
        # The keys that sign permits; their private halves are sealed under the server secret.
        self.signing_keys = permit_keys.SigningKeys(
            store, lambda: permit_keys.server_secret(secret_key, store.url), clock
        )

    # -- policy ---------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def policy_loaded_at(self) -> float:
        return self._policy_loaded_at

    def set_policy(self, policy: Policy, *, actor: str | None = None, source: str | None = None) -> None:
        """Swap the active policy and record the reload in the audit log."""
        now = self.clock()
        with self._policy_lock:
            old = self._policy
            self.store.write(
                lambda conn: audit.append(
                    conn,
                    event="policy.reloaded",
                    ts=now,
                    actor=actor,
                    data={"old_hash": old.hash, "new_hash": policy.hash, "source": source or policy.source},
                )
            )
            self._policy = policy
            self._policy_loaded_at = now
        self.telemetry.metrics.policy_reload(applied=True)

    @property
    def shadow_policy(self) -> Policy | None:
        return self._shadow

    @property
    def shadow_loaded_at(self) -> float | None:
        return self._shadow_loaded_at

    def set_shadow_policy(self, policy: Policy | None) -> None:
        """Swap (or, with None, stop) the shadow policy; its divergence counts start again."""
        with self._policy_lock:
            if policy is not None and self._shadow is not None and policy.hash == self._shadow.hash:
                return
            self._shadow = policy
            self._shadow_loaded_at = self.clock() if policy is not None else None
            self.shadow_stats.reset()

    # -- keys -------------------------------------------------------------------
    def create_key(
        self,
        *,
        role: Role | str,
        name: str = "",
        agent_id: str | None = None,
        groups: tuple[str, ...] | list[str] = (),
        actor: str | Identity | None = None,
    ) -> tuple[KeyInfo, str]:
        """Create an API key; its secret is returned once and never stored."""
        return keys.create_key(
            self.store, role=role, name=name, agent_id=agent_id, groups=groups, actor=actor, now=self.clock()
        )

    def revoke_key(self, key_id: str, *, actor: str | Identity | None = None) -> KeyInfo:
        """Revoke a key and end its open event streams and waits in this process now;
        other processes on a shared database hear of it through the change notice."""
        info = keys.revoke_key(self.store, key_id, actor=actor, now=self.clock())
        # Also when it was already revoked: whatever it still holds here is closed.
        self.hub.revoke(info.id)
        return info

    def list_keys(self) -> list[KeyInfo]:
        return keys.list_keys(self.store)

    def authenticate(self, secret: str) -> Identity | None:
        """The identity behind a presented API key; None when it is unknown or revoked."""
        cached = self.cached_identity(secret)
        if cached is not None:
            return cached
        return keys.authenticate_into(self.store, secret, self.key_cache)

    def cached_identity(self, secret: str) -> Identity | None:
        """The identity of a key verified moments ago, without touching the database (so
        the event loop may call it); None means "ask `authenticate`", not "refused"."""
        return keys.cached_identity(self.key_cache, secret)

    def remembered(self, secret: str) -> tuple[Identity | None, bool]:
        """`cached_identity`, and whether this caller should re-verify the key in the
        background now (`refresh_key`); at most one caller at a time is told so. No
        database access."""
        return keys.remembered(self.key_cache, secret)

    def refresh_key(self, secret: str) -> None:
        """Re-verify a remembered key ahead of its expiry (after `remembered` said so)."""
        keys.refresh_into(self.store, secret, self.key_cache)

    def identity_for_key(self, key_id: str) -> Identity | None:
        return keys.identity_for_key(self.store, key_id)

    def check_revoked_keys(self) -> int:
        """End the streams and waits of keys revoked without notice (e.g. by the CLI on
        SQLite): one read for every key that holds one. Returns how many were ended."""
        return self.hub.check_keys(lambda held: keys.revoked_among(self.store, held))

    # -- people (single sign-on) ---------------------------------------------------------
    def sign_in_person(
        self, config: SsoConfig, claims: people.Claims, *, session_id: str, tokens: str | None
    ) -> tuple[Identity | None, str]:
        """Record a person's sign-in and open their session; (None, why) when they have no access."""
        return people.sign_in(self.store, config, claims, session_id=session_id, tokens=tokens, now=self.clock())

    def person_session(self, session_id: str) -> people.PersonSession | None:
        return people.load_session(self.store, session_id, self.clock())

    def claim_person_recheck(self, session: people.PersonSession) -> bool:
        return people.claim_recheck(self.store, session, self.clock())

    def postpone_person_recheck(self, session: people.PersonSession) -> None:
        people.postpone_recheck(self.store, session)

    def recheck_person(
        self,
        config: SsoConfig,
        session: people.PersonSession,
        claims: people.Claims | None,
        *,
        tokens: str | None,
        why: str = "",
    ) -> tuple[Identity | None, str]:
        return people.recheck(self.store, config, session, claims, tokens=tokens, why=why, now=self.clock())

    def sign_out_person(self, session_id: str, identity: Identity | None) -> str | None:
        return people.sign_out(self.store, session_id, identity, self.clock())

    def person_for_chat(self, email: str) -> tuple[Identity | None, str]:
        return people.person_for_chat(self.store, email, self.clock())

    # -- webhooks ---------------------------------------------------------------
    def create_webhook(self, spec: webhooks.WebhookFields, *, actor: str | Identity | None = None) -> Any:
        """Store a webhook receiver; returns its row (the secret is shown to its creator once)."""
        return webhooks.create_webhook(self.store, spec, actor=actor, now=self.clock())

    def delete_webhook(self, webhook_id: str, *, actor: str | Identity | None = None) -> Any:
        """Remove a stored webhook receiver; returns the removed row."""
        return webhooks.delete_webhook(self.store, webhook_id, actor=actor, now=self.clock())

    def webhook_deliveries(self, webhook_id: str | None = None, limit: int = 50) -> list[Any]:
        return webhooks.deliveries(self.store, webhook_id, limit)

    # -- standing grants ----------------------------------------------------------
    def create_grant(
        self, identity: Identity, spec: grants.GrantSpec, *, action_id: str | None = None
    ) -> dict[str, Any]:
        """Record a standing grant (approver or admin); returns it as the API shows it."""
        now = self.clock()
        return grants.to_view(grants.create(self.store, identity, spec, now=now, action_id=action_id), now)

    def list_grants(self, identity: Identity, *, active_only: bool = False) -> list[dict[str, Any]]:
        now = self.clock()
        rows = grants.list_all(self.store, identity, active_at=now if active_only else None)
        return [grants.to_view(r, now) for r in rows]

    def revoke_grant(self, identity: Identity, grant_id: str) -> dict[str, Any]:
        now = self.clock()
        return grants.to_view(grants.revoke(self.store, identity, grant_id, now=now), now)

    # -- submit -----------------------------------------------------------------
    @staticmethod
    def _resolve_agent(identity: Identity, sub: Submission) -> str:
        return agents.resolve_agent(identity, sub)

    def evaluate(self, identity: Identity, sub: Submission) -> tuple[Decision, str, str]:
        """Validate and evaluate without recording: (decision, agent_id, request_hash)."""
        return submit.evaluate(self._policy, self.clock(), identity, sub)

    def submit(self, identity: Identity, sub: Submission) -> dict[str, Any]:
        started_ns = time.time_ns()
        done = submit.submit(self, identity, sub)
        if done.reattached or not done.created:
            return self._answer_found(identity, done)
        return self._answer_created(identity, done, started_ns)

    async def submit_async(self, identity: Identity, sub: Submission) -> dict[str, Any]:
        """`submit` for the event loop: no worker thread per submit, whose hand-offs cost
        more than the decision. The validation, the policy, the signature and the answer
        run on the loop; only the write is awaited (`submit.submit_async`: on SQLite in
        the loop's group commit, on PostgreSQL in the writer thread's group)."""
        started_ns = time.time_ns()
        done = await submit.submit_async(self, identity, sub)
        if done.reattached or not done.created:
            # Rare answers that read the database (and may renew a permit): off the loop.
            return await anyio.to_thread.run_sync(self._answer_found, identity, done)
        return self._answer_created(identity, done, started_ns)

    def _answer_found(self, identity: Identity, done: Submitted) -> dict[str, Any]:
        """The answer when submit found an action instead of creating one: the first one
        of a repeated Idempotency-Key, or an identical held action re-attached."""
        if done.reattached:
            self._publish("action.reattached", done.row, done.seq)
            row = self._fresh_permit(identity, done.row)
            return self._view(row, identity, counted=reads.counted(self.store, row)) | {"reattached": True}
        return self._view(done.row, identity, counted=reads.counted(self.store, done.row)) | {"reattached": False}

    def _answer_created(self, identity: Identity, done: Submitted, started_ns: int) -> dict[str, Any]:
        if done.shadow is not None:
            self.shadow_stats.record(done.decision.effect.value, done.shadow.decision)
            self._observe(self.telemetry.metrics.shadow, done.decision.effect.value, done.shadow.decision)
        # One view for the events and the answer: the caller's differs only by the token.
        public = self._view(done.row, None, counted=0 if done.granted_seq is None else 1)
        self._publish("action.created", done.row, done.seq, view=public)
        if done.granted_seq is not None:  # held, then approved at once by a standing grant
            by = decision_details(done.row.decided_by, None)  # "grant:<id>", as the audit record's actor
            self._publish("action.approved", done.row, done.granted_seq, view=public, extra=by)
        self._observe(self.telemetry.submitted, done.row, started_ns)
        return views.for_caller(public, done.row, identity) | {"reattached": False}

    # -- reads ------------------------------------------------------------------
    def get(self, identity: Identity, action_id: str, *, pick_up: bool = False) -> dict[str, Any]:
        """The action. With `pick_up` (the agent's own read or wait answer, not a stream
        replay or a page), an approval its submitting agent now sees is picked up."""
        row, votes = reads.get(self.store, identity, action_id)
        if pick_up and presence.needs_pickup(row, identity):
            # Committed before the agent is told "approved"; a lapse that won is shown instead.
            row, seq = presence.pick_up(self, identity, row)
            if seq is not None:
                self._publish(presence.PICKED_UP, row, seq)
        return self._view(self._fresh_permit(identity, row), identity, votes)

    def _fresh_permit(self, identity: Identity, row: Any) -> Any:
        """The row, with a fresh permit when its submitting agent reads it and the stored
        one is expiring (see service/permits.py)."""
        if permits.needs_renewal(row, identity, self.clock(), self.permit_ttl):
            row, _ = permits.renew(self, identity, row, approvals.approvers_of(self.store, row))
        return row

    def agent_waiting(self, identity: Identity, action_id: str) -> None:
        """Note that the caller waits on the action (presence, when it is the submitter)."""
        presence.touch(self, identity, action_id)

    def get_status(self, identity: Identity, action_id: str) -> Status:
        return reads.get_status(self.store, identity, action_id)

    def list_actions(
        self,
        identity: Identity,
        *,
        status: str | None = None,
        tool: str | None = None,
        agent_id: str | None = None,
        risk: str | None = None,
        id_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: int | None = None,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int | None]:
        page = reads.list_actions(
            self.store,
            identity,
            status=status,
            tool=tool,
            agent_id=agent_id,
            risk=risk,
            id_prefix=id_prefix,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            offset=offset,
        )
        return [self._view(r, identity, counted=page.counted.get(r.id)) for r in page.rows], page.next_cursor

    def events(self, identity: Identity, action_id: str) -> list[dict[str, Any]]:
        return [views.event_view(r) for r in reads.events(self.store, identity, action_id)]

    def params_for_hash(self, identity: Identity, action_id: str, rhash: str) -> dict[str, Any] | None:
        """The params the action had when its request_hash was `rhash`, if it ever was."""
        return reads.params_for_hash(self.store, self.get(identity, action_id), rhash)

    def snapshot(self, action_id: str) -> tuple[dict[str, Any], str] | None:
        """The action as events carry it (no approval token) and its submitter's key id."""
        row = self.store.read(lambda conn: access.load(conn, action_id))
        if row is None:
            return None
        return self._view(row, None, counted=reads.counted(self.store, row)), row.submitted_by

    # -- decisions --------------------------------------------------------------
    def approve(
        self,
        identity: Identity,
        action_id: str,
        *,
        reason: str | None = None,
        token: str | None = None,
        params: Any = None,
        expected_hash: str | None = None,
    ) -> dict[str, Any]:
        """Approve; with `params`, approve edited arguments (re-evaluated by the policy).

        `expected_hash` binds the vote to the arguments the approver saw: when the
        action's request_hash differs (someone edited it), the vote is refused.
        """
        return self._decide(
            identity, action_id, approve=True, reason=reason, token=token, params=params, expected_hash=expected_hash
        )

    def deny(
        self,
        identity: Identity,
        action_id: str,
        *,
        reason: str | None = None,
        token: str | None = None,
        expected_hash: str | None = None,
    ) -> dict[str, Any]:
        return self._decide(identity, action_id, approve=False, reason=reason, token=token, expected_hash=expected_hash)

    def _decide(
        self,
        identity: Identity,
        action_id: str,
        *,
        approve: bool,
        reason: str | None,
        token: str | None,
        params: Any = None,
        expected_hash: str | None = None,
    ) -> dict[str, Any]:
        done = approvals.decide(
            self,
            identity,
            action_id,
            approve=approve,
            reason=reason,
            token=token,
            params=params,
            expected_hash=expected_hash,
        )
        # Receivers (webhooks) are told who decided: the label, and the person behind it.
        who = decision_details(identity.label, identity.person.to_dict() if identity.person else None)
        self._publish(done.event, done.row, done.seq, counted=done.counted, extra=who)
        return self._view(done.row, identity, done.votes)

    def cancel(self, identity: Identity, action_id: str, *, reason: Any = None) -> dict[str, Any]:
        """Withdraw a held (or approved, not yet run) action: by its agent or an admin."""
        row, seq = cancel.cancel(self, identity, action_id, reason=reason)
        self._publish(cancel.EVENT, row, seq)
        return self._view(row, identity, counted=reads.counted(self.store, row))

    # -- results ----------------------------------------------------------------
    def report_result(
        self,
        identity: Identity,
        action_id: str,
        *,
        success: Any,
        result: Any = None,
        error: Any = None,
    ) -> dict[str, Any]:
        row, seq, event = results.report(self, identity, action_id, success=success, result=result, error=error)
        counted = reads.counted(self.store, row)
        self._publish(event, row, seq, counted=counted)
        return self._view(row, identity, counted=counted)

    # -- execution: start, lease, reconcile ----------------------------------------
    def start_action(self, identity: Identity, action_id: str) -> dict[str, Any]:
        """Take the single execution of an allowed or approved action (once; then 409)."""
        row, seq = execution.start(self, identity, action_id)
        self._publish(execution.STARTED, row, seq)
        return self._view(row, identity)

    def heartbeat(self, identity: Identity, action_id: str) -> dict[str, Any]:
        """Extend the execution lease of a started action."""
        return self._view(execution.heartbeat(self, identity, action_id), identity)

    def reconcile(
        self,
        identity: Identity,
        action_id: str,
        *,
        outcome: Any,
        reason: Any = None,
        result: Any = None,
        error: Any = None,
    ) -> dict[str, Any]:
        """Record what became of an action whose outcome is unknown (its agent or a person)."""
        row, seq, event = execution.reconcile(
            self, identity, action_id, outcome=outcome, reason=reason, result=result, error=error
        )
        self._publish(event, row, seq)
        return self._view(row, identity)

    # -- permit keys --------------------------------------------------------------
    def permit_jwks(self) -> dict[str, Any]:
        """The public keys permits are verified with (JWKS): the signing key and retired
        keys whose permits may not have expired yet."""
        return self.signing_keys.jwks()

    # -- expiry -----------------------------------------------------------------
    def expire_due(self, now: float | None = None, batch: int = 500) -> int:
        """Deny every pending action whose approval window has passed, cancel every
        approval that lapsed unused, and mark started actions whose execution lease ran
        out `outcome_unknown`. Returns how many actions changed."""
        now = self.clock() if now is None else now
        expired = expiry.expire_due(self.store, now, batch, lambda row, seq: self._publish("action.expired", row, seq))
        lapsed = expiry.lapse_due(self.store, now, batch, lambda row, seq: self._publish(cancel.EVENT, row, seq))
        unknown = execution.lease_due(
            self.store,
            now,
            batch,
            self.execution_lease,
            lambda row, seq: self._publish(execution.LEASE_EXPIRED, row, seq),
        )
        return expired + lapsed + unknown

    def send_nudges(self, now: float | None = None, batch: int = 200) -> int:
        """Send the reminders and escalations due now (rules with remind_after / escalate_after)."""
        now = self.clock() if now is None else now
        return nudges.send_due(
            self.store,
            self._policy,
            now,
            batch,
            lambda event, row, seq, data: self._publish(event, row, seq, extra=data),
        )

    def next_expiry(self) -> float | None:
        """When the next held action expires, approval lapses or execution lease runs out, if any."""
        due = [expiry.next_expiry(self.store), self.store.read(execution.next_lease_end)]
        return min((d for d in due if d is not None), default=None)

    # -- output -----------------------------------------------------------------
    def _view(
        self, row: Any, identity: Identity | None, approval_rows: Any = None, *, counted: int | None = None
    ) -> dict[str, Any]:
        return views.to_api(row, identity, approval_rows, counted=counted, now=self.clock())

    def _counted(self, row: Any) -> int | None:
        return reads.counted(self.store, row)

    def _publish(
        self,
        event_type: str,
        row: Any,
        seq: int,
        *,
        counted: int | None = None,
        extra: dict[str, Any] | None = None,
        view: dict[str, Any] | None = None,
    ) -> None:
        """Tell the streams and waiters about a committed change. `view` is the action's
        public view when the caller has built it already."""
        if view is None:
            view = self._view(row, None, counted=self._counted(row) if counted is None else counted)
        self.hub.publish(
            ChangeEvent(
                seq=seq,
                type=event_type,
                action_id=row.id,
                action=view,
                data={"submitted_by": row.submitted_by} | (extra or {}),
            )
        )
        self._observe(self.telemetry.changed, event_type, row)

    @staticmethod
    def _observe(record: Callable[..., None], *args: Any) -> None:
        # The change is committed: a failure to record metrics must not fail the request.
        try:
            record(*args)
        except Exception:
            log.exception("recording telemetry failed")

    to_api = staticmethod(views.to_api)
