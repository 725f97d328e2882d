"""The CLI's exit codes, one meaning each, so a script can tell "not found" from
"conflict" from "server down". The table in docs/cli.md is checked against this enum."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # A check found problems (invalid policy, lint findings, failing cases, a broken audit
    # chain, a counter-example), the server refused the request for another reason
    # (400, 413, 422, 500), or the server could not start.
    FAILED = 1
    # Bad options or arguments, no API key, a file or database that cannot be used, or a
    # command this install does not include (`faramesh[server]` missing).
    USAGE = 2
    NOT_FOUND = 3  # no such action or key (HTTP 404)
    CONFLICT = 4  # not allowed in the current state (HTTP 409), e.g. deciding a decided action
    AUTH = 5  # missing, unknown or revoked key (401), or a role that may not do this (403)
    UNREACHABLE = 6  # the server cannot be reached, or is unavailable (502, 503, 504)
    RATE_LIMITED = 7  # too many requests for this key (429); retry later
    UNDECIDED = 8  # `policy prove`: the claim can be neither proven nor refuted


def for_status(status_code: int) -> ExitCode:
    """The exit code for an HTTP error status from the server."""
    if status_code == 404:
        return ExitCode.NOT_FOUND
    if status_code == 409:
        return ExitCode.CONFLICT
    if status_code in (401, 403):
        return ExitCode.AUTH
    if status_code == 429:
        return ExitCode.RATE_LIMITED
    if status_code in (502, 503, 504):
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED
