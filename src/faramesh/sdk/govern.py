"""Run code only when Faramesh allows it, and report what happened.

    from faramesh import govern

    @govern(tool="refund", operation="process")
    def refund_customer(amount: float, customer_id: str) -> dict: ...

Each call submits the action with the function's arguments as `params`, waits for a
person when the policy asks for approval, runs the function only when the action is
`allowed` or `approved` (with the arguments the approver settled on), and reports the
return value or the exception. Otherwise it raises `ActionDenied` (a PermissionError)
or `ApprovalTimeout` (a TimeoutError) and the function never runs. An unreachable or
restarting server is retried until `timeout` (the submit carries an Idempotency-Key, so
a retry never creates a second action), then `ServerUnavailable` (an ApprovalTimeout and
a FarameshConnectionError) is raised: fail closed, never run.

When the caller stops waiting for a held action (`timeout`, a cancelled task, Ctrl-C),
`on_abandon` decides: "keep" (default) leaves it held so the same call made again picks
up the decision and runs once; "cancel" withdraws it (best effort). The function never
runs for the call that gave up.

`Gate` is the same cycle for code that is not a plain function (framework tools, the
MCP gateway); `governed_action` is the `with client.govern(...)` form.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from faramesh.sdk.governed import (
    DEFAULT_ON_ABANDON,
    DEFAULT_TIMEOUT,
    ON_ABANDON_CHOICES,
    PENDING,
    RUNNABLE,
    GovernedAction,
    OnAbandon,
    Outcome,
    aclaim,
    agoverned_action,
    approved_params,
    areport_outcome,
    asubmit_and_wait,
    check_on_abandon,
    claim,
    default_outcome,
    describe_error,
    governed_action,
    json_params,
    jsonable,
    report_outcome,
    runnable,
    submit_and_wait,
)
from faramesh.sdk.governed import action_label as _label

# The cycle itself lives in governed.py (it needs no client); these names stay importable from here.
__all__ = [
    "DEFAULT_ON_ABANDON",
    "DEFAULT_TIMEOUT",
    "ON_ABANDON_CHOICES",
    "PENDING",
    "RUNNABLE",
    "AnyClient",
    "Gate",
    "GovernedAction",
    "OnAbandon",
    "Outcome",
    "agoverned_action",
    "approved_params",
    "describe_error",
    "govern",
    "governed_action",
    "json_params",
    "jsonable",
    "runnable",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
AnyClient = ExecutionGovernorClient | AsyncExecutionGovernorClient
_PASSTHROUGH = ("self", "cls")


# -- Gate: the cycle for any callable --------------------------------------------------------
class Gate:
    """Submit, wait, run only when allowed or approved, report; for one tool and operation.

    `call` receives the params as decided and whether an approver changed them.
    `outcome` maps the returned value to (success, result, error) for the report;
    by default any return is a success with the value as the result. `on_abandon`:
    what becomes of a held action when the caller stops waiting ("keep" or "cancel").
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
        on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
    ) -> None:
        self.tool = tool
        self.operation = operation
        self.client = client
        self.timeout = timeout
        self.context = dict(context) if context else None
        self.agent_id = agent_id
        self.on_abandon = check_on_abandon(on_abandon, _label(tool, operation))
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
        return self._submit_and_wait(self.sync_client(), checked)

    def _submit_and_wait(self, client: ExecutionGovernorClient, params: dict[str, Any]) -> dict[str, Any]:
        return submit_and_wait(
            client, self.tool, self.operation, params, self.context, self.agent_id, self.timeout, self.on_abandon
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
        action = self._submit_and_wait(client, checked)
        decided = approved_params(action, self.label)
        action = claim(client, action, self.tool, self.operation, decided)  # before the try: nothing ran yet
        try:
            value = call(decided, decided != checked)
        except BaseException as exc:
            report_outcome(client, action["id"], (False, None, describe_error(exc)))
            raise
        report_outcome(client, action["id"], (outcome or default_outcome)(value))
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
            action = await asubmit_and_wait(
                client,
                self.tool,
                self.operation,
                checked,
                self.context,
                self.agent_id,
                self.timeout,
                self.on_abandon,
            )
            decided = approved_params(action, self.label)
            action = await aclaim(client, action, self.tool, self.operation, decided)
            try:
                value = await call(decided, decided != checked)
            except BaseException as exc:
                await areport_outcome(client, action["id"], (False, None, describe_error(exc)))
                raise
            await areport_outcome(client, action["id"], (outcome or default_outcome)(value))
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
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
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
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> Any:
    """Decorate a sync or async function so that each call is governed by Faramesh.

    tool: defaults to the function's name. operation: defaults to "invoke".
    client: an ExecutionGovernorClient or AsyncExecutionGovernorClient; by default one
    built from FARAMESH_URL and FARAMESH_API_KEY. timeout: seconds to wait for a
    person's decision (None waits without limit). context, agent_id: sent with every
    submission (e.g. context={"agent_id": "billing-bot"}). on_abandon: when the call
    stops waiting for a held action (timeout, cancelled task, Ctrl-C), "keep" it for the
    same call made again (default) or "cancel" it.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        gate = Gate(
            tool or func.__name__,
            operation,
            client=client,
            timeout=timeout,
            context=context,
            agent_id=agent_id,
            on_abandon=on_abandon,
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
