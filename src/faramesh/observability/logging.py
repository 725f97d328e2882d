"""Log output: readable text, or one JSON object per line (`--log-format json`).

A JSON line carries ts, level, logger and message, the action id when one is known
(passed as `extra={"action_id": ...}` or taken from the request being served), any
other `extra` fields, and the traceback as `exc` when there is one.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The action the current request is about (from its path), for log lines that do
# not name one themselves.
current_action_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("faramesh_action_id", default=None)

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_ACTION_PATH = re.compile(r"^/v1/actions/([^/]{1,64})")


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, with the time stamp's date and clock formatted once a second: every
    change of every action is a record, and `strftime` was a fifth of a record's cost."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, stamp = self._second
        if second != int(record.created):
            second = int(record.created)
            stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, stamp)  # one assignment: another thread sees old or new
        return f"{stamp},{int(record.msecs):03d}"  # logging's default_msec_format


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        action_id = getattr(record, "action_id", None) or current_action_id.get()
        if action_id:
            data["action_id"] = action_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(data, default=str).decode()


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every log record (ours, uvicorn's, libraries') to stderr in the chosen format."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Every action's state change is a record (faramesh.events), so a record's cost is
    # paid on each submit. Neither format shows the caller's file and line, the thread or
    # the process, so records skip looking them up (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class ActionLogContext:
    """Sets `current_action_id` from `/v1/actions/{id}/...` for the request's log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _ACTION_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        token = current_action_id.set(match.group(1))
        try:
            await self.app(scope, receive, send)
        finally:
            current_action_id.reset(token)
