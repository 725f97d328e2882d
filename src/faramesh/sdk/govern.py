"""Run code only when Faramesh allows it, and report what happened.

    from faramesh import govern

    @govern(tool="refund", operation="process")
    def refund_customer(amount: float, customer_id: str) -> dict: ...

Each call submits the action with the function's arguments as `params`, waits for a
person when the policy asks for approval, runs the function only when the action is
`allowed` or `approved` (with the arguments the approver settled on), and reports the
return value or the exception. Otherwise it raises `ActionDenied` (a PermissionError)
or `ApprovalTimeout` (a TimeoutError) and the function never runs. An unreachable
server raises `FarameshConnectionError`: fail closed, never run.

`Gate` is the same cycle for code that is not a plain function (framework tools, the
MCP gateway); `governed_action` is the `with client.govern(...)` form.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload

from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from faramesh.sdk.errors import ActionDenied, ApprovalTimeout, FarameshClientError

log = logging.getLogger("faramesh.govern")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
AnyClient = ExecutionGovernorClient | AsyncExecutionGovernorClient
# (success, result, error) to report for a value the governed code returned.
Outcome = tuple[bool, Any, str | None]

PENDING = "pending_approval"
RUNNABLE = frozenset({"allowed", "approved"})
DEFAULT_TIMEOUT = 300.0
# When waiting without a limit, ask the server again this often.
_FOREVER_SLICE = 3600.0
_MAX_ERROR_TEXT = 10_000
_PASSTHROUGH = ("self", "cls")


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


# -- the decision ------------------------------------------------------------------------
def _label(tool: str, operation: str) -> str:
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


def _decide(
    client: ExecutionGovernorClient,
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any] | None,
    agent_id: str | None,
    timeout: float | None,
) -> dict[str, Any]:
    action = client.submit_action(tool, operation, params, context, agent_id=agent_id)
    if action.get("status") == PENDING:
        if timeout is None:
            while action.get("status") == PENDING:
                action = client.wait_for_decision(action["id"], timeout=_FOREVER_SLICE)
        else:
            action = client.wait_for_decision(action["id"], timeout=timeout)
    return runnable(action, _label(tool, operation), timeout)


async def _call(client: AnyClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call a client method from async code; a sync client runs in a worker thread."""
    fn = getattr(client, method)
    if isinstance(client, AsyncExecutionGovernorClient):
        return await fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _adecide(
    client: AnyClient,
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any] | None,
    agent_id: str | None,
    timeout: float | None,
) -> dict[str, Any]:
    action = await _call(client, "submit_action", tool, operation, params, context, agent_id=agent_id)
    if action.get("status") == PENDING:
        if timeout is None:
            while action.get("status") == PENDING:
                action = await _call(client, "wait_for_decision", action["id"], timeout=_FOREVER_SLICE)
        else:
            action = await _call(client, "wait_for_decision", action["id"], timeout=timeout)
    return runnable(action, _label(tool, operation), timeout)


def _report(client: ExecutionGovernorClient, action_id: str, outcome: Outcome) -> None:
    # The code has already run: a failed report is logged, never raised, so a caller
    # does not retry (and repeat) an action that happened.
    success, result, error = outcome
    try:
        client.report_result(action_id, success=success, result=result, error=error)
    except FarameshClientError as exc:
        log.warning("could not report the result of action %s: %s", action_id, exc)


async def _areport(client: AnyClient, action_id: str, outcome: Outcome) -> None:
    success, result, error = outcome
    try:
        await _call(client, "report_result", action_id, success=success, result=result, error=error)
    except FarameshClientError as exc:
        log.warning("could not report the result of action %s: %s", action_id, exc)


def _default_outcome(value: Any) -> Outcome:
    return True, jsonable(value), None


# -- Gate: the cycle for any callable --------------------------------------------------------
class Gate:
    """Submit, wait, run only when allowed or approved, report; for one tool and operation.

    `call` receives the params as decided and whether an approver changed them.
    `outcome` maps the returned value to (success, result, error) for the report;
    by default any return is a success with the value as the result.
    """

    def __init__(
        self,
        tool: str,
        operation: str,
        *,
        client: AnyClient | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        context: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> None:
        self.tool = tool
        self.operation = operation
        self.client = client
        self.timeout = timeout
        self.context = dict(context) if context else None
        self.agent_id = agent_id
        self._default: ExecutionGovernorClient | None = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return _label(self.tool, self.operation)

    def sync_client(self) -> ExecutionGovernorClient:
        if isinstance(self.client, ExecutionGovernorClient):
            return self.client
        if self.client is not None:
            raise TypeError(f"{self.label}: an AsyncExecutionGovernorClient cannot govern synchronous code")
        with self._lock:
            if self._default is None:
                self._default = ExecutionGovernorClient()  # FARAMESH_URL / FARAMESH_API_KEY
            return self._default

    @asynccontextmanager
    async def async_client(self) -> AsyncIterator[AnyClient]:
        if self.client is not None:
            yield self.client
            return
        # A fresh client per call: an httpx.AsyncClient belongs to one event loop.
        async with AsyncExecutionGovernorClient() as client:
            yield client

    def decide(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Submit and wait; the runnable action, else ActionDenied / ApprovalTimeout."""
        checked = json_params(params, self.label)
        return _decide(
            self.sync_client(), self.tool, self.operation, checked, self.context, self.agent_id, self.timeout
        )

    def run(
        self,
        params: Mapping[str, Any],
        call: Callable[[dict[str, Any], bool], T],
        *,
        outcome: Callable[[T], Outcome] | None = None,
    ) -> T:
        checked = json_params(params, self.label)
        client = self.sync_client()
        action = _decide(client, self.tool, self.operation, checked, self.context, self.agent_id, self.timeout)
        try:
            decided = approved_params(action, self.label)
            value = call(decided, decided != checked)
        except BaseException as exc:
            _report(client, action["id"], (False, None, describe_error(exc)))
            raise
        _report(client, action["id"], (outcome or _default_outcome)(value))
        return value

    async def arun(
        self,
        params: Mapping[str, Any],
        call: Callable[[dict[str, Any], bool], Awaitable[T]],
        *,
        outcome: Callable[[T], Outcome] | None = None,
    ) -> T:
        checked = json_params(params, self.label)
        async with self.async_client() as client:
            action = await _adecide(
                client, self.tool, self.operation, checked, self.context, self.agent_id, self.timeout
            )
            try:
                decided = approved_params(action, self.label)
                value = await call(decided, decided != checked)
            except BaseException as exc:
                await _areport(client, action["id"], (False, None, describe_error(exc)))
                raise
            await _areport(client, action["id"], (outcome or _default_outcome)(value))
            return value


# -- the decorator -------------------------------------------------------------------------
class _Signature:
    """Function arguments to params and back (to apply an approver's changes by name)."""

    def __init__(self, fn: Callable[..., Any], where: str) -> None:
        self.sig = inspect.signature(fn)
        self.where = where
        names = list(self.sig.parameters)
        # A method's receiver is passed through untouched and is not part of params.
        self.passthrough = names[0] if names and names[0] in _PASSTHROUGH else None
        self.has_varargs = any(p.kind is p.VAR_POSITIONAL for p in self.sig.parameters.values())

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[inspect.BoundArguments, dict[str, Any]]:
        bound = self.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        params: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name == self.passthrough:
                continue
            if self.sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                params.update(value)
            else:
                params[name] = value
        return bound, params

    def rebind(self, bound: inspect.BoundArguments, decided: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Arguments for a call with the decided params; TypeError when they do not fit."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        left = dict(decided)
        var_kw = False
        for name, p in self.sig.parameters.items():
            if name == self.passthrough:
                args.append(bound.arguments[name])
            elif p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and self.has_varargs):
                if name in left:
                    args.append(left.pop(name))
            elif p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY:
                if name in left:
                    kwargs[name] = left.pop(name)
            elif p.kind is p.VAR_POSITIONAL:
                extra = left.pop(name, [])
                if not isinstance(extra, list):
                    raise TypeError(f"{self.where}: approved params give {name} as {type(extra).__name__}, not a list")
                args.extend(extra)
            else:
                var_kw = True
        if left and not var_kw:
            raise TypeError(f"{self.where}: approved params have {sorted(left)}, which the function does not take")
        kwargs.update(left)
        try:
            self.sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.where}: approved params do not fit the function: {exc}") from None
        return args, kwargs


@overload
def govern(fn: F, /) -> F: ...


@overload
def govern(
    *,
    tool: str | None = None,
    operation: str = "invoke",
    client: AnyClient | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    context: Mapping[str, Any] | None = None,
    agent_id: str | None = None,
) -> Callable[[F], F]: ...


def govern(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    tool: str | None = None,
    operation: str = "invoke",
    client: AnyClient | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    context: Mapping[str, Any] | None = None,
    agent_id: str | None = None,
) -> Any:
    """Decorate a sync or async function so that each call is governed by Faramesh.

    tool: defaults to the function's name. operation: defaults to "invoke".
    client: an ExecutionGovernorClient or AsyncExecutionGovernorClient; by default one
    built from FARAMESH_URL and FARAMESH_API_KEY. timeout: seconds to wait for a
    person's decision (None waits without limit). context, agent_id: sent with every
    submission (e.g. context={"agent_id": "billing-bot"}).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        gate = Gate(
            tool or func.__name__,
            operation,
            client=client,
            timeout=timeout,
            context=context,
            agent_id=agent_id,
        )
        signature = _Signature(func, gate.label)

        def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[inspect.BoundArguments, dict[str, Any]]:
            bound, params = signature.bind(args, kwargs)
            return bound, json_params(params, gate.label)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                bound, params = prepare(args, kwargs)

                async def call(decided: dict[str, Any], edited: bool) -> Any:
                    if not edited:
                        return await func(*bound.args, **bound.kwargs)
                    a, kw = signature.rebind(bound, decided)
                    return await func(*a, **kw)

                return await gate.arun(params, call)

            async_wrapper.gate = gate  # type: ignore[attr-defined]
            return async_wrapper

        if isinstance(client, AsyncExecutionGovernorClient):
            raise TypeError(f"{gate.label}: an AsyncExecutionGovernorClient cannot govern a synchronous function")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound, params = prepare(args, kwargs)

            def call(decided: dict[str, Any], edited: bool) -> Any:
                if not edited:
                    return func(*bound.args, **bound.kwargs)
                a, kw = signature.rebind(bound, decided)
                return func(*a, **kw)

            return gate.run(params, call)

        wrapper.gate = gate  # type: ignore[attr-defined]
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


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


@contextmanager
def governed_action(
    client: ExecutionGovernorClient,
    tool: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    agent_id: str | None = None,
) -> Iterator[GovernedAction]:
    gate = Gate(tool, operation, client=client, timeout=timeout, context=context, agent_id=agent_id)
    action = gate.decide(params or {})
    handle = GovernedAction(action=action, params=approved_params(action, gate.label))
    try:
        yield handle
    except BaseException as exc:
        _report(client, handle.id, (False, None, describe_error(exc)))
        raise
    _report(client, handle.id, (True, jsonable(handle.result), None))


@asynccontextmanager
async def agoverned_action(
    client: AnyClient,
    tool: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    agent_id: str | None = None,
) -> AsyncIterator[GovernedAction]:
    label = _label(tool, operation)
    checked = json_params(params or {}, label)
    action = await _adecide(client, tool, operation, checked, dict(context) if context else None, agent_id, timeout)
    handle = GovernedAction(action=action, params=approved_params(action, label))
    try:
        yield handle
    except BaseException as exc:
        await _areport(client, handle.id, (False, None, describe_error(exc)))
        raise
    await _areport(client, handle.id, (True, jsonable(handle.result), None))
