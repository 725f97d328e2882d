"""One exception hierarchy. Each error knows its HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class FarameshError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        err.update(self.extra)
        return {"detail": self.message, "error": err}


class InvalidInput(FarameshError):
    status_code = 422
    code = "invalid_input"


class Unauthorized(FarameshError):
    status_code = 401
    code = "unauthorized"


class KeyRevoked(Unauthorized):
    """The key behind an open event stream or wait was revoked while it was open."""

    def __init__(self, message: str = "this API key was revoked", **kw: Any) -> None:
        super().__init__(message, **kw)


class Forbidden(FarameshError):
    status_code = 403
    code = "forbidden"


class NotFound(FarameshError):
    status_code = 404
    code = "not_found"


class Conflict(FarameshError):
    """A state change that is not allowed now (someone else won, or wrong status)."""

    status_code = 409
    code = "invalid_transition"


class TooLarge(FarameshError):
    status_code = 413
    code = "too_large"


class RateLimited(FarameshError):
    status_code = 429
    code = "rate_limited"


class Unavailable(FarameshError):
    status_code = 503
    code = "unavailable"


class ServerDraining(Unavailable):
    """The server is shutting down (SIGTERM): open waits and new waits or streams get this,
    so a client retries after `retry_after` seconds (on this address once restarted, or on
    another replica) instead of seeing a 500 or a connection cut."""

    code = "server_draining"

    def __init__(self, message: str = "the server is restarting; retry shortly", *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)
