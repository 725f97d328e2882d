"""The sync and async clients offer the same methods, with the same parameters; the
async ones are awaited (or async-iterated) where the sync ones return (or iterate)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient

SYNC, ASYNC = ExecutionGovernorClient, AsyncExecutionGovernorClient
# The documented pairs whose names differ: closing, and `with` versus `async with`.
PAIRS = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
# The sync form of a return type and its async counterpart.
ASYNC_FORMS: dict[Any, Any] = {Iterator: AsyncIterator, AbstractContextManager: AbstractAsyncContextManager}


def public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}


def shared_methods() -> list[str]:
    return sorted(public_methods(SYNC) - set(PAIRS))


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    hints = get_type_hints(fn)
    return [(p.name, p.kind, p.default, hints.get(p.name)) for p in inspect.signature(fn).parameters.values()]


def test_both_clients_have_the_same_public_methods() -> None:
    sync_only = public_methods(SYNC) - set(PAIRS) - public_methods(ASYNC)
    async_only = public_methods(ASYNC) - set(PAIRS.values()) - public_methods(SYNC)
    assert not sync_only, f"only on ExecutionGovernorClient: {sorted(sync_only)}"
    assert not async_only, f"only on AsyncExecutionGovernorClient: {sorted(async_only)}"
    assert "stream_events" in public_methods(ASYNC)


def test_closing_and_context_manager_pairs() -> None:
    for sync_name, async_name in PAIRS.items():
        assert callable(getattr(SYNC, sync_name)) and not inspect.iscoroutinefunction(getattr(SYNC, sync_name))
        assert inspect.iscoroutinefunction(getattr(ASYNC, async_name)), async_name
    assert not hasattr(SYNC, "aclose") and not hasattr(ASYNC, "close")


@pytest.mark.parametrize("name", ["__init__", *shared_methods()])
def test_same_parameters(name: str) -> None:
    sync_params, async_params = parameters(getattr(SYNC, name)), parameters(getattr(ASYNC, name))
    if name == "__init__":
        # The transport is the one thing that must differ: an httpx sync or async transport.
        sync_params = [p for p in sync_params if p[0] != "transport"]
        async_params = [p for p in async_params if p[0] != "transport"]
    assert sync_params == async_params


@pytest.mark.parametrize("name", shared_methods())
def test_async_form_of_each_method(name: str) -> None:
    sync_fn, async_fn = getattr(SYNC, name), getattr(ASYNC, name)
    sync_returns, async_returns = get_type_hints(sync_fn)["return"], get_type_hints(async_fn)["return"]
    assert sync_fn.__doc__ and async_fn.__doc__, f"{name} needs a docstring on both clients"
    assert not inspect.iscoroutinefunction(sync_fn) and not inspect.isasyncgenfunction(sync_fn)
    if inspect.isgeneratorfunction(sync_fn):
        # An iterator becomes an async iterator of the same items.
        assert inspect.isasyncgenfunction(async_fn), f"{name} should be an async generator"
    elif get_origin(sync_returns) in ASYNC_FORMS:
        # A context manager (`govern`) stays a plain call that returns the async form.
        assert not inspect.iscoroutinefunction(async_fn) and not inspect.isasyncgenfunction(async_fn)
    else:
        assert inspect.iscoroutinefunction(async_fn), f"{name} should be a coroutine function"
    origin = get_origin(sync_returns)
    if origin in ASYNC_FORMS:
        assert get_origin(async_returns) is ASYNC_FORMS[origin]
        assert get_args(async_returns) == get_args(sync_returns)
    else:
        assert async_returns == sync_returns  # what the coroutine returns
