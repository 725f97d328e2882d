"""Python SDK for Faramesh."""

from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from faramesh.sdk.errors import (
    ActionDenied,
    ApprovalTimeout,
    AuthenticationError,
    ConflictError,
    FarameshAPIError,
    FarameshClientError,
    FarameshConnectionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServerUnavailable,
    ValidationError,
)

__all__ = [
    "ActionDenied",
    "ApprovalTimeout",
    "AsyncExecutionGovernorClient",
    "AuthenticationError",
    "ConflictError",
    "ExecutionGovernorClient",
    "FarameshAPIError",
    "FarameshClientError",
    "FarameshConnectionError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServerUnavailable",
    "ValidationError",
]
