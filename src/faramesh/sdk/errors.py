"""Exceptions raised by the SDK. Each API error carries the server's message and listed code."""

from __future__ import annotations

from typing import Any

from faramesh.errors import ERRORS, ErrorCode, known_code


class FarameshClientError(Exception):
    """Base class for everything the SDK raises."""


class FarameshConnectionError(FarameshClientError, ConnectionError):
    """The server could not be reached. Nothing may be executed on this basis."""


class ApprovalTimeout(FarameshClientError, TimeoutError):
    """No decision arrived in time. The action stays pending on the server; nothing ran."""

    def __init__(self, message: str, *, action: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.action = action
        self.action_id: str | None = action.get("id") if action else None


class ServerUnavailable(ApprovalTimeout, FarameshConnectionError):
    """The server could not be reached (or was restarting) until the caller's deadline,
    although the SDK kept retrying. Fail closed: nothing ran. An ApprovalTimeout and a
    FarameshConnectionError, so handlers of either catch it."""


class ActionDenied(FarameshClientError, PermissionError):
    """The action was denied (by policy, by a person, or because its approval expired).

    Raised by `govern` before the governed code runs; the code never runs.
    """

    def __init__(self, message: str, *, action: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.action = action
        self.action_id: str | None = action.get("id") if action else None
        self.status: str | None = action.get("status") if action else None
        self.reason: str | None = action.get("reason") if action else None


class FarameshAPIError(FarameshClientError):
    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: ErrorCode | str | None = None,
        field: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        # A listed code becomes its ErrorCode (equal to its string); a newer server's unknown code stays a str.
        self.code: ErrorCode | str | None = known_code(code) or code
        self.field = field
        self.body = body

    @property
    def detail(self) -> str:
        return self.message

    @property
    def current_status(self) -> str | None:
        """For a 409: the action's status at the time of the conflict."""
        if isinstance(self.body, dict):
            err = self.body.get("error")
            if isinstance(err, dict):
                status = err.get("status")
                return status if isinstance(status, str) else None
        return None


class AuthenticationError(FarameshAPIError):
    """401: missing, unknown or revoked key."""


class PermissionDeniedError(FarameshAPIError, PermissionError):
    """403: the key's role or identity does not allow this."""


class NotFoundError(FarameshAPIError):
    """404."""


class ConflictError(FarameshAPIError):
    """409: the transition is not allowed now (another decision won, or wrong status)."""


class ValidationError(FarameshAPIError, ValueError):
    """422 (and other 4xx about the request itself)."""


class RateLimitError(FarameshAPIError):
    """429."""

    retry_after: float | None = None


class ServerError(FarameshAPIError):
    """5xx. `retry_after`: the server's Retry-After in seconds (a stopping server sends 503 with one)."""

    retry_after: float | None = None


_BY_STATUS: dict[int, type[FarameshAPIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def exception_class(status_code: int) -> type[FarameshAPIError]:
    """The SDK exception for an HTTP status."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ValidationError if 400 <= status_code < 500 else FarameshAPIError)


# Every listed error code, and the exception the SDK raises for it.
EXCEPTION_FOR_CODE: dict[ErrorCode, type[FarameshAPIError]] = {
    code: exception_class(status) for code, (status, _) in ERRORS.items()
}


def error_for(status_code: int, body: Any, fallback_text: str = "") -> FarameshAPIError:
    message = fallback_text or f"HTTP {status_code}"
    code = field = None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            message = detail
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code") if isinstance(err.get("code"), str) else None
            field = err.get("field") if isinstance(err.get("field"), str) else None
    listed = known_code(code)
    # The code decides when it is listed for this status; otherwise the status does.
    if listed is not None and listed.status == status_code:
        cls = EXCEPTION_FOR_CODE[listed]
    else:
        cls = exception_class(status_code)
    return cls(message, status_code=status_code, code=code, field=field, body=body)
