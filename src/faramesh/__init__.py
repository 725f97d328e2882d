"""Faramesh: an execution governor for AI agents.

    from faramesh import govern, ActionDenied, ExecutionGovernorClient

The public names load on first use, so `import faramesh` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "govern": "faramesh.sdk.govern",
    "ActionDenied": "faramesh.sdk.errors",
    "ApprovalTimeout": "faramesh.sdk.errors",
    "ExecutionGovernorClient": "faramesh.sdk.client",
    "AsyncExecutionGovernorClient": "faramesh.sdk.client",
}

__all__ = ["ActionDenied", "ApprovalTimeout", "AsyncExecutionGovernorClient", "ExecutionGovernorClient", "govern"]

if TYPE_CHECKING:
    from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
    from faramesh.sdk.errors import ActionDenied, ApprovalTimeout
    from faramesh.sdk.govern import govern


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faramesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
