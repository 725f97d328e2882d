"""The governed cycle: submit, wait for a decision, run only when allowed or approved,
report what happened. Fail closed: anything but `allowed` / `approved` raises.

It needs only three methods of a client (`Governor` / `AsyncGovernor`), so it does not
import the clients: client.py builds `client.govern(...)` on top of it and govern.py
(the decorator, which builds default clients) uses both.

A server restart does not end the cycle: the submit carries a fresh Idempotency-Key, so it
is retried safely when its answer was lost (the server returns the action the first try
created), the wait retries on its own, and the result report is retried for a while.
Retries stop at the caller's deadline (`timeout`), with ServerUnavailable: nothing ran.

When the caller stops waiting while the action is held (its deadline, a task cancelled by
a framework's tool timeout, KeyboardInterrupt), `on_abandon` says what becomes of it:
"keep" (the default) leaves it held, so the same call made again re-attaches to it and
runs once with its approval, and the server lapses an approval nobody picks up; "cancel"
withdraws it, best effort. Either way the code never runs for that call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import anyio

from faramesh.permit import PermitError, PermitExpired, PermitKeys, PermitUnknownKey, verify_action
from faramesh.sdk.errors import ActionDenied, ApprovalTimeout, ConflictError, FarameshClientError, ServerUnavailable
from faramesh.sdk.retry import next_delay

log = logging.getLogger("faramesh.govern")

# (success, result, error) to report for a value the governed code returned.
Outcome = tuple[bool, Any, str | None]

PENDING = "pending_approval"
RUNNABLE = frozenset({"allowed", "approved"})
DEFAULT_TIMEOUT = 300.0
# When waiting without a limit, ask the server again this often.
_FOREVER_SLICE = 3600.0
# How long a result report is retried while the server is unavailable (the code has run:
# an unreported result leaves the action looking unexecuted).
REPORT_RETRY_SECONDS = 30.0
_MAX_ERROR_TEXT = 10_000

# What becomes of a held action when the caller stops waiting for it (see the module doc).
OnAbandon = Literal["keep", "cancel"]
ON_ABANDON_CHOICES: tuple[OnAbandon, ...] = ("keep", "cancel")
DEFAULT_ON_ABANDON: OnAbandon = "keep"
# Longest a best-effort cancel may hold up async code that is itself being cancelled.
CANCEL_GRACE = 5.0
# Longest single wait of a sync client used from async code (see `_await_decision`).
_THREAD_SLICE = 5.0


class Governor(Protocol):
    """What the cycle calls on a synchronous client."""

    def submit_action(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]: ...

    def wait_for_decision(self, action_id: str, timeout: float = ...) -> dict[str, Any]: ...

    def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]: ...

    def cancel_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]: ...

    def get_action(self, action_id: str) -> dict[str, Any]: ...

    def start_action(self, action_id: str) -> dict[str, Any]: ...

    def permit_keys(self) -> dict[str, Any]: ...


class AsyncGovernor(Protocol):
    """What the cycle awaits on an asynchronous client."""

    async def submit_action(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]: ...

    async def wait_for_decision(self, action_id: str, timeout: float = ...) -> dict[str, Any]: ...

    async def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]: ...

    async def cancel_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]: ...

    async def get_action(self, action_id: str) -> dict[str, Any]: ...

    async def start_action(self, action_id: str) -> dict[str, Any]: ...

    async def permit_keys(self) -> dict[str, Any]: ...


AnyGovernor = Governor | AsyncGovernor


def is_async(client: AnyGovernor) -> bool:
    return inspect.iscoroutinefunction(client.submit_action)


# -- JSON -----------------------------------------------------------------------------
def json_params(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check that params are plain JSON (tuples become lists); a clear TypeError otherwise."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: params must be a mapping, not {type(value).__name__}")
    return cast(dict[str, Any], _json(dict(value), "params", where))


def _json(value: Any, path: str, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {path} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, list | tuple):
        return [_json(item, f"{path}[{i}]", where) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: {path} has a key of type {type(key).__name__}; JSON keys are strings")
            out[key] = _json(item, f"{path}.{key}", where)
        return out
    raise TypeError(
        f"{where}: {path} is a {type(value).__name__}, which is not JSON-safe; pass str, int, float, "
        "bool, None, lists or dicts with string keys (convert it before the call)"
    )


def jsonable(value: Any) -> Any:
    """A JSON form of a returned value for the result report (best effort, never raises)."""
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value, fallback=repr)
    except Exception:  # a result that cannot be shown must not hide that the call succeeded
        return repr(value)


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_MAX_ERROR_TEXT]


def default_outcome(value: Any) -> Outcome:
    return True, jsonable(value), None


# -- the decision ------------------------------------------------------------------------
def action_label(tool: str, operation: str) -> str:
    return f"{tool}.{operation}"


def runnable(action: Mapping[str, Any], label: str, timeout: float | None) -> dict[str, Any]:
    """The action if it may run now; ActionDenied or ApprovalTimeout otherwise (fail closed)."""
    status = action.get("status")
    action_id = action.get("id")
    if status in RUNNABLE and isinstance(action_id, str) and action_id:
        return dict(action)
    if status == PENDING:
        raise ApprovalTimeout(
            f"{label}: no decision within {timeout:g}s; action {action_id} is still pending_approval and was not run",
            action=dict(action),
        )
    reason = action.get("reason") or "no reason given"
    if status == "denied":
        raise ActionDenied(f"{label} denied: {reason} (action {action_id})", action=dict(action))
    raise ActionDenied(
        f"{label} not run: action {action_id} is {status!r}, not allowed or approved", action=dict(action)
    )


def approved_params(action: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The params as decided; an approver may have changed them."""
    params = action.get("params")
    if not isinstance(params, dict):
        raise FarameshClientError(f"{label}: the server's answer has no params object; not running")
    return params


def check_on_abandon(value: str, where: str) -> OnAbandon:
    """`value` if it is a known on_abandon choice; ValueError otherwise."""
    if value not in ON_ABANDON_CHOICES:
        raise ValueError(f"{where}: on_abandon must be 'keep' or 'cancel', not {value!r}")
    return value


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


# -- when the caller stops waiting -----------------------------------------------------------
# Statuses in which the code has not run and the action can still be withdrawn.
_WITHDRAWABLE = (PENDING, "approved")


def _why(exc: BaseException, timeout: float | None) -> str:
    """Why the caller stopped waiting, for the cancel reason and the log."""
    if isinstance(exc, ServerUnavailable):
        return "the Faramesh server was unavailable until the caller's deadline"
    if isinstance(exc, ApprovalTimeout):
        return f"no decision within {timeout:g}s" if timeout is not None else "no decision in time"
    if isinstance(exc, asyncio.CancelledError):
        return "the call was cancelled (a tool or client timeout, or a shutdown)"
    if isinstance(exc, KeyboardInterrupt):
        return "the agent was interrupted (KeyboardInterrupt)"
    return f"the wait failed ({describe_error(exc)})"


def _kept(label: str, action_id: str, why: str) -> str:
    log.warning(
        "%s: stopped waiting for action %s (%s); it stays held, and the same call made again re-attaches to it",
        label,
        action_id,
        why,
    )
    return (
        "It stays held (on_abandon='keep'): the same call made again picks up its decision; "
        "an approval nobody picks up lapses on the server."
    )


def _cancelled(label: str, action_id: str, why: str) -> str:
    log.info("%s: cancelled action %s because the caller stopped waiting (%s)", label, action_id, why)
    return "It was cancelled (on_abandon='cancel')."


def _not_cancelled(label: str, action_id: str, exc: BaseException) -> str:
    log.warning("%s: could not cancel action %s after the caller stopped waiting: %s", label, action_id, exc)
    now = exc.current_status if isinstance(exc, ConflictError) else None
    if now:
        return f"Cancelling it was refused: it is {now} now."
    return f"Cancelling it failed ({exc}), so it may still be held."


def _explain(exc: BaseException, action: dict[str, Any], what: str) -> None:
    """Add what became of the action to an ApprovalTimeout (other exceptions pass unchanged)."""
    if isinstance(exc, ApprovalTimeout):
        exc.args = (f"{exc} {what}", *exc.args[1:])
        exc.action = dict(action)
        exc.action_id = str(action["id"])


def _cancel_reason(why: str) -> str:
    return f"The agent stopped waiting: {why}"


def abandon(
    client: Governor, action: dict[str, Any], on_abandon: OnAbandon, why: str, label: str
) -> tuple[dict[str, Any], str]:
    """Keep or cancel (best effort) a held action its caller stopped waiting for: (the action
    as last known, a sentence saying what became of it). Never raises a client error."""
    action_id = str(action["id"])
    if on_abandon == "keep":
        return action, _kept(label, action_id, why)
    try:
        cancelled = client.cancel_action(action_id, _cancel_reason(why))
    except FarameshClientError as exc:
        return action, _not_cancelled(label, action_id, exc)
    return cancelled, _cancelled(label, action_id, why)


async def aabandon(
    client: AnyGovernor, action: dict[str, Any], on_abandon: OnAbandon, why: str, label: str
) -> tuple[dict[str, Any], str]:
    """`abandon` from async code. The cancel is shielded from the cancellation that is
    usually why the caller stopped (a tool timeout), and bounded by CANCEL_GRACE."""
    action_id = str(action["id"])
    if on_abandon == "keep":
        return action, _kept(label, action_id, why)
    failure: BaseException = TimeoutError(f"no answer within {CANCEL_GRACE:g}s")
    with anyio.move_on_after(CANCEL_GRACE, shield=True):
        try:
            cancelled = await _call(client, "cancel_action", action_id, _cancel_reason(why))
        except FarameshClientError as exc:
            failure = exc
        else:
            return cancelled, _cancelled(label, action_id, why)
    return action, _not_cancelled(label, action_id, failure)


# -- submit and wait ---------------------------------------------------------------------------
def submit_and_wait(
    client: Governor,
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any] | None,
    agent_id: str | None,
    timeout: float | None,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> dict[str, Any]:
    """Submit, wait while pending; the runnable action, else ActionDenied / ApprovalTimeout.

    A submit that repeats a held call of the same agent re-attaches to it (the server
    answers with that action), so an approval given meanwhile is picked up here."""
    label = action_label(tool, operation)
    deadline = _deadline(timeout)
    key = uuid.uuid4().hex  # one per governed call: a repeated submit returns the same action
    attempt = 0
    while True:
        try:
            action = client.submit_action(tool, operation, params, context, agent_id=agent_id, idempotency_key=key)
            break
        except FarameshClientError as exc:
            time.sleep(next_delay(exc, attempt, deadline, f"{label}: submitting"))
            attempt += 1
    held = action
    try:
        if action.get("status") == PENDING:
            if deadline is None:
                while action.get("status") == PENDING:
                    action = client.wait_for_decision(held["id"], timeout=_FOREVER_SLICE)
            else:
                action = client.wait_for_decision(held["id"], timeout=_left(deadline))
        return runnable(action, label, timeout)
    except BaseException as exc:
        # Nothing has run. A held action is kept for a retry or withdrawn, never left unsaid.
        if action.get("status") in _WITHDRAWABLE and not isinstance(exc, ActionDenied):
            last, what = abandon(client, action, on_abandon, _why(exc, timeout), label)
            _explain(exc, last, what)
        raise


async def _call(client: AnyGovernor, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call a client method from async code; a sync client runs in a worker thread."""
    fn = getattr(client, method)
    if is_async(client):
        return await fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _await_decision(client: AnyGovernor, action_id: str, timeout: float) -> dict[str, Any]:
    """wait_for_decision from async code. A sync client waits in a worker thread, which a
    cancellation cannot stop: it waits in short slices, so a thread left behind by a
    cancelled call ends soon (and the event loop can close) instead of at the deadline."""
    if is_async(client):
        return await cast(AsyncGovernor, client).wait_for_decision(action_id, timeout=timeout)
    sync = cast(Governor, client)
    deadline = time.monotonic() + timeout
    while True:
        try:
            action = await asyncio.to_thread(sync.wait_for_decision, action_id, min(_left(deadline), _THREAD_SLICE))
        except ServerUnavailable:
            if _left(deadline) > 0:  # the slice's own deadline, not the caller's: keep trying
                continue
            raise
        if action.get("status") != PENDING or _left(deadline) <= 0:
            return action


async def asubmit_and_wait(
    client: AnyGovernor,
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any] | None,
    agent_id: str | None,
    timeout: float | None,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> dict[str, Any]:
    """submit_and_wait from async code, with either kind of client. A cancellation of the
    calling task while the action is held (a framework's tool timeout) is an abandonment."""
    label = action_label(tool, operation)
    deadline = _deadline(timeout)
    key = uuid.uuid4().hex
    attempt = 0
    while True:
        try:
            action = await _call(
                client, "submit_action", tool, operation, params, context, agent_id=agent_id, idempotency_key=key
            )
            break
        except FarameshClientError as exc:
            await asyncio.sleep(next_delay(exc, attempt, deadline, f"{label}: submitting"))
            attempt += 1
    held = action
    try:
        if action.get("status") == PENDING:
            if deadline is None:
                while action.get("status") == PENDING:
                    action = await _await_decision(client, held["id"], _FOREVER_SLICE)
            else:
                action = await _await_decision(client, held["id"], _left(deadline))
        return runnable(action, label, timeout)
    except BaseException as exc:
        if action.get("status") in _WITHDRAWABLE and not isinstance(exc, ActionDenied):
            last, what = await aabandon(client, action, on_abandon, _why(exc, timeout), label)
            _explain(exc, last, what)
        raise


def report_outcome(client: Governor, action_id: str, outcome: Outcome) -> None:
    # The code has already run: a failed report is logged, never raised, so a caller
    # does not retry (and repeat) an action that happened.
    success, result, error = outcome
    deadline = time.monotonic() + REPORT_RETRY_SECONDS
    attempt = 0
    while True:
        try:
            client.report_result(action_id, success=success, result=result, error=error)
            return
        except FarameshClientError as exc:
            if _reported_before(exc, attempt):
                return
            try:
                delay = next_delay(exc, attempt, deadline, f"reporting the result of action {action_id}")
            except FarameshClientError as final:
                log.warning("could not report the result of action %s: %s", action_id, final)
                return
        time.sleep(delay)
        attempt += 1


async def areport_outcome(client: AnyGovernor, action_id: str, outcome: Outcome) -> None:
    success, result, error = outcome
    deadline = time.monotonic() + REPORT_RETRY_SECONDS
    attempt = 0
    while True:
        try:
            await _call(client, "report_result", action_id, success=success, result=result, error=error)
            return
        except FarameshClientError as exc:
            if _reported_before(exc, attempt):
                return
            try:
                delay = next_delay(exc, attempt, deadline, f"reporting the result of action {action_id}")
            except FarameshClientError as final:
                log.warning("could not report the result of action %s: %s", action_id, final)
                return
        await asyncio.sleep(delay)
        attempt += 1


def _reported_before(exc: FarameshClientError, attempt: int) -> bool:
    """A 409 on a repeated report: the try whose answer was lost did record the result."""
    return attempt > 0 and isinstance(exc, ConflictError) and exc.current_status in ("succeeded", "failed")


# -- the context manager ---------------------------------------------------------------------
@dataclass
class GovernedAction:
    """What `with client.govern(...) as action:` gives the block.

    Use `action.params` (the params as approved, possibly changed by the approver) and
    set `action.result` to have it reported when the block ends without an exception.
    """

    action: dict[str, Any]
    params: dict[str, Any]
    result: Any = None

    @property
    def id(self) -> str:
        return str(self.action["id"])

    @property
    def status(self) -> str:
        return str(self.action["status"])

    @property
    def edited(self) -> bool:
        """Whether an approver changed the params."""
        original = self.action.get("original_params")
        return isinstance(original, dict) and original != self.params


# -- the permit and the single start ---------------------------------------------------------
_KEYS_ATTRIBUTE = "_faramesh_permit_keys"


def _refused(label: str, action: Mapping[str, Any], exc: PermitError) -> ActionDenied:
    return ActionDenied(f"{label} not run: its permit does not allow this call ({exc})", action=dict(action))


def claim(
    client: Governor, action: dict[str, Any], tool: str, operation: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Before the code runs: the action's permit must allow exactly this call (tool,
    operation, the arguments about to run), then the single start must be ours (a second
    start is a ConflictError: someone else runs it). Fail closed: the code never runs
    otherwise. A server that issues no permits leaves nothing to check or start."""
    if action.get("permit") is None:
        return action
    label = action_label(tool, operation)
    for attempt in range(3):
        keys = getattr(client, _KEYS_ATTRIBUTE, None)
        try:
            if keys is None:
                keys = PermitKeys.from_jwks(client.permit_keys())
                setattr(client, _KEYS_ATTRIBUTE, keys)
            verify_action(action, tool=tool, operation=operation, params=params, keys=keys)
            break
        except PermitUnknownKey as exc:  # rotated since the keys were fetched: fetch once more
            if attempt or keys is None:
                raise _refused(label, action, exc) from exc
            setattr(client, _KEYS_ATTRIBUTE, None)
        except PermitExpired as exc:  # a read by its agent renews it
            if attempt > 1:
                raise _refused(label, action, exc) from exc
            action = client.get_action(str(action["id"]))
        except PermitError as exc:
            raise _refused(label, action, exc) from exc
    client.start_action(str(action["id"]))
    return action


async def aclaim(
    client: AnyGovernor, action: dict[str, Any], tool: str, operation: str, params: dict[str, Any]
) -> dict[str, Any]:
    """`claim` for async code (and sync clients used from it)."""
    if action.get("permit") is None:
        return action
    label = action_label(tool, operation)
    for attempt in range(3):
        keys = getattr(client, _KEYS_ATTRIBUTE, None)
        try:
            if keys is None:
                keys = PermitKeys.from_jwks(await _call(client, "permit_keys"))
                setattr(client, _KEYS_ATTRIBUTE, keys)
            verify_action(action, tool=tool, operation=operation, params=params, keys=keys)
            break
        except PermitUnknownKey as exc:
            if attempt or keys is None:
                raise _refused(label, action, exc) from exc
            setattr(client, _KEYS_ATTRIBUTE, None)
        except PermitExpired as exc:
            if attempt > 1:
                raise _refused(label, action, exc) from exc
            action = await _call(client, "get_action", str(action["id"]))
        except PermitError as exc:
            raise _refused(label, action, exc) from exc
    await _call(client, "start_action", str(action["id"]))
    return action


@contextmanager
def governed_action(
    client: Governor,
    tool: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    agent_id: str | None = None,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> Iterator[GovernedAction]:
    where = action_label(tool, operation)
    if is_async(client):
        raise TypeError(f"{where}: an AsyncExecutionGovernorClient cannot govern synchronous code")
    check_on_abandon(on_abandon, where)
    checked = json_params(params or {}, where)
    action = submit_and_wait(
        client, tool, operation, checked, dict(context) if context else None, agent_id, timeout, on_abandon
    )
    params_now = approved_params(action, where)
    action = claim(client, action, tool, operation, params_now)
    handle = GovernedAction(action=action, params=params_now)
    try:
        yield handle
    except BaseException as exc:
        report_outcome(client, handle.id, (False, None, describe_error(exc)))
        raise
    report_outcome(client, handle.id, (True, jsonable(handle.result), None))


@asynccontextmanager
async def agoverned_action(
    client: AnyGovernor,
    tool: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    agent_id: str | None = None,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> AsyncIterator[GovernedAction]:
    where = action_label(tool, operation)
    check_on_abandon(on_abandon, where)
    checked = json_params(params or {}, where)
    action = await asubmit_and_wait(
        client, tool, operation, checked, dict(context) if context else None, agent_id, timeout, on_abandon
    )
    params_now = approved_params(action, where)
    action = await aclaim(client, action, tool, operation, params_now)
    handle = GovernedAction(action=action, params=params_now)
    try:
        yield handle
    except BaseException as exc:
        await areport_outcome(client, handle.id, (False, None, describe_error(exc)))
        raise
    await areport_outcome(client, handle.id, (True, jsonable(handle.result), None))
