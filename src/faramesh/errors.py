"""Every error code the REST API can answer with, and one exception hierarchy that uses them.

:class:`ErrorCode` and :data:`ERRORS` are the one list: the server's error handlers,
the SDK's mapping and the table in docs/errors.md all come from it. This module
imports nothing from the server, so the SDK can use it on its own.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """``error.code`` in an error response. The values are a public contract: never rename one."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    READ_ONLY = "read_only"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_TRANSITION = "invalid_transition"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    REQUEST_HASH_MISMATCH = "request_hash_mismatch"
    OUTCOME_UNKNOWN = "outcome_unknown"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_INPUT = "invalid_input"
    INVALID_JSON = "invalid_json"
    RATE_LIMITED = "rate_limited"
    HEADERS_TOO_LARGE = "headers_too_large"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    SERVER_DRAINING = "server_draining"

    @property
    def status(self) -> int:
        return ERRORS[self][0]

    @property
    def meaning(self) -> str:
        return ERRORS[self][1]


# code -> (HTTP status, meaning). For each status, the first code listed is the one an
# error with only a status gets (e.g. the router's 404).
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (400, "The request is malformed, e.g. its body framing is ambiguous."),
    ErrorCode.UNAUTHORIZED: (401, "No API key, an unknown one, or one revoked (also while a stream is open)."),
    ErrorCode.FORBIDDEN: (403, "The key's role or identity may not do this (e.g. approving its own action)."),
    ErrorCode.READ_ONLY: (403, "The object comes from a configuration file and cannot be changed through the API."),
    ErrorCode.NOT_FOUND: (404, "No such action, key, webhook or route, or not visible to this key."),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "The route exists but not with this HTTP method."),
    ErrorCode.INVALID_TRANSITION: (409, "The action's status does not allow this now; `error.status` is the status."),
    ErrorCode.IDEMPOTENCY_MISMATCH: (409, "The Idempotency-Key was already used by this key for a different request."),
    ErrorCode.REQUEST_HASH_MISMATCH: (409, "The action's arguments changed since the given `request_hash`."),
    ErrorCode.OUTCOME_UNKNOWN: (
        409,
        "An identical earlier action (`error.action_id`) was started and never reported; reconcile it, then retry.",
    ),
    ErrorCode.TOO_LARGE: (413, "The request body is over the server's limit."),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: (415, "The body is not sent as `Content-Type: application/json`."),
    ErrorCode.INVALID_INPUT: (422, "A field is missing, of the wrong type or out of range; `error.field` names it."),
    ErrorCode.INVALID_JSON: (422, "The request body is not valid JSON."),
    ErrorCode.RATE_LIMITED: (429, "Too many requests for this API key; retry after `Retry-After` seconds."),
    ErrorCode.HEADERS_TOO_LARGE: (431, "The request line and headers are over the server's limit."),
    ErrorCode.INTERNAL: (500, "An unexpected error; for a change, `error.outcome` is `unknown`: re-read first."),
    ErrorCode.UNAVAILABLE: (503, "The database is unreachable or refuses writes; retry after `Retry-After`."),
    ErrorCode.SERVER_DRAINING: (
        503,
        "The server is shutting down; retry after `Retry-After` (a restarted server or another replica answers).",
    ),
}


def code_for_status(status: int) -> ErrorCode:
    """The code of an error known only by its HTTP status."""
    for code, (code_status, _) in ERRORS.items():
        if code_status == status:
            return code
    return ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST


def known_code(code: str | None) -> ErrorCode | None:
    """The listed code with this value, or None."""
    try:
        return ErrorCode(code) if code is not None else None
    except ValueError:
        return None


def markdown_table() -> str:
    """The list as the Markdown table in docs/errors.md."""
    lines = ["| code | HTTP status | meaning |", "|---|---|---|"]
    lines += [f"| `{code.value}` | {status} | {meaning} |" for code, (status, meaning) in ERRORS.items()]
    return "\n".join(lines)


class FarameshError(Exception):
    """An error with a listed code. ``code=`` picks another code of the class's status
    (e.g. ``Conflict(..., code="request_hash_mismatch")``); an unlisted code is a bug."""

    status_code = ErrorCode.BAD_REQUEST.status
    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(
        self, message: str, *, field: str | None = None, code: ErrorCode | str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        if code is not None:
            listed = known_code(code)
            if listed is None or listed.status != self.status_code:
                raise ValueError(f"error code {code!r} is not a listed {self.status_code} code")
            self.code = listed
        self.message = message
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code.value, "message": self.message, "field": self.field}
        err.update(self.extra)
        return {"detail": self.message, "error": err}


class InvalidInput(FarameshError):
    status_code = ErrorCode.INVALID_INPUT.status
    code = ErrorCode.INVALID_INPUT


class Unauthorized(FarameshError):
    status_code = ErrorCode.UNAUTHORIZED.status
    code = ErrorCode.UNAUTHORIZED


class KeyRevoked(Unauthorized):
    """The key behind an open event stream or wait was revoked while it was open."""

    def __init__(self, message: str = "this API key was revoked", **kw: Any) -> None:
        super().__init__(message, **kw)


class Forbidden(FarameshError):
    status_code = ErrorCode.FORBIDDEN.status
    code = ErrorCode.FORBIDDEN


class NotFound(FarameshError):
    status_code = ErrorCode.NOT_FOUND.status
    code = ErrorCode.NOT_FOUND


class Conflict(FarameshError):
    """A state change that is not allowed now (someone else won, or wrong status)."""

    status_code = ErrorCode.INVALID_TRANSITION.status
    code = ErrorCode.INVALID_TRANSITION


class TooLarge(FarameshError):
    status_code = ErrorCode.TOO_LARGE.status
    code = ErrorCode.TOO_LARGE


class RateLimited(FarameshError):
    status_code = ErrorCode.RATE_LIMITED.status
    code = ErrorCode.RATE_LIMITED


class Unavailable(FarameshError):
    status_code = ErrorCode.UNAVAILABLE.status
    code = ErrorCode.UNAVAILABLE


class ServerDraining(Unavailable):
    """The server is shutting down (SIGTERM): open waits and new waits or streams get this,
    so a client retries after `retry_after` seconds (on this address once restarted, or on
    another replica) instead of seeing a 500 or a connection cut."""

    code = ErrorCode.SERVER_DRAINING

    def __init__(self, message: str = "the server is restarting; retry shortly", *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)
