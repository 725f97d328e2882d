"""Every error leaves the server in one JSON shape:
{"detail": "<message>", "error": {"code": ..., "message": ..., "field": ...}},
with a code from the one list in :mod:`faramesh.errors`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faramesh.errors import ErrorCode, FarameshError, code_for_status, known_code
from faramesh.storage.errors import connection_lost

log = logging.getLogger("faramesh.server")


def error_body(
    status: int, message: str, *, code: ErrorCode | str | None = None, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The error body; without a ``code``, the listed code for ``status``. An unlisted code is a bug."""
    if code is None:
        listed = code_for_status(status)
    else:
        found = known_code(code)
        if found is None:
            raise ValueError(f"error code {code!r} is not in faramesh.errors.ERRORS")
        listed = found
    err: dict[str, Any] = {"code": listed.value, "message": message, "field": field}
    err.update(extra)
    return {"detail": message, "error": err}


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None, **kw: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, **kw), status_code=status, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else None


def _is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def faramesh_error_response(exc: FarameshError) -> JSONResponse:
    """The answer to a refusal the service or the edge raised (4xx, 503)."""
    headers = None
    if exc.status_code in (429, 503) and "retry_after" in exc.extra:
        headers = {"Retry-After": str(int(exc.extra["retry_after"]) or 1)}
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(FarameshError)
    async def _faramesh_error(request: Request, exc: FarameshError) -> JSONResponse:
        return faramesh_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "invalid"}
        kind = first.get("type", "")
        loc = tuple(first.get("loc", ()))
        if kind == "json_invalid":
            ctx = first.get("ctx")
            reason = ctx.get("error", "") if isinstance(ctx, dict) else ""
            return error_response(
                422, f"Request body is not valid JSON: {reason}".rstrip(": "), code=ErrorCode.INVALID_JSON, field="body"
            )
        # A body that was not parsed as JSON arrives as bytes: its Content-Type was
        # missing or not JSON.
        unparsed = isinstance(getattr(exc, "body", None), (bytes, bytearray))
        if (
            loc
            and loc[0] == "body"
            and request.method in ("POST", "PUT", "PATCH")
            and (unparsed or (request.headers.get("content-type") and not _is_json(request)))
        ):
            return error_response(415, "Content-Type must be application/json", field="content-type")
        if loc == ("body",) and kind in ("model_attributes_type", "dict_type", "model_type"):
            return error_response(422, "request body must be a JSON object", field="body")
        field = _field_of(loc)
        if kind == "missing":
            message = f"{field} is required" if field else "request body is required"
        else:
            message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
        return error_response(
            422,
            message,
            field=field,
            problems=[{"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg")} for e in errors[:20]],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        if exc.status_code == 413:
            limit = getattr(request.app, "max_body_size", None)
            message = f"request body is over the limit of {limit} bytes" if limit else "request body is too large"
            return error_response(413, message, field="body", headers=getattr(exc, "headers", None))
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Sent from outside the middleware that adds the security headers, so add them here.
        return unexpected_error_response(request.method, exc, dict(getattr(request.app, "guard_headers", {})))


def unexpected_error_response(method: str, exc: Exception, headers: dict[str, str]) -> JSONResponse:
    """The answer to a failure nobody expected: 503 when the database went away, else 500."""
    # Never claim a change was not applied: the failure may have come after its commit
    # (e.g. the connection dropped while the answer was read, or during COMMIT itself).
    changes = method not in SAFE_METHODS
    if connection_lost(exc):
        message = "the database is unavailable"
        if changes:
            message += "; the outcome of this request is unknown: re-read it before retrying"
        return error_response(
            503, message, code=ErrorCode.UNAVAILABLE, headers=headers | {"Retry-After": "1"}, outcome="unknown"
        )
    if changes:
        return error_response(
            500,
            "internal error; the outcome of this request is unknown: re-read it before retrying",
            code=ErrorCode.INTERNAL,
            headers=headers,
            outcome="unknown",
        )
    return error_response(500, "internal error", code=ErrorCode.INTERNAL, headers=headers)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
