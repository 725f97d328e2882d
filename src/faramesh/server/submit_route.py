"""POST /v1/actions for the ordinary request, without the framework's per-request work.

Every tool call an agent makes goes through this route, so its cost is the gate's cost.
FastAPI's routing, dependency solving and exception wrappers spent more CPU on it than
the decision and the durable write together. This plain ASGI layer, inside the security
headers, metrics and tracing middleware, answers a submit itself when everything about
it is ordinary:

- JSON content type, a body within the limit that parses strictly (no repeated keys,
  exact numbers, no NUL) into what `SubmitBody` accepts;
- one `Authorization: Bearer` header and at most one `Idempotency-Key`.

It then authenticates and submits through the same functions the FastAPI route uses
(`server.auth.identify`, `server.api.answer_submit`) and answers refusals with the same
`faramesh_error_response`. Anything else (a malformed body, a missing key, an odd header)
is handed to the FastAPI route unchanged, body included, which gives the documented
error. So the fast path decides nothing of its own: it only skips work.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faramesh.errors import FarameshError
from faramesh.jsonstrict import strictness_problem
from faramesh.server.api import SubmitBody, answer_submit
from faramesh.server.auth import bearer_secret, identify
from faramesh.server.errors import faramesh_error_response

PATH = "/v1/actions"


class FastSubmit:
    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute], max_body_size: int | None) -> None:
        self.app = app
        self.max_body_size = max_body_size
        # The route the metrics label this path with, as if the router had matched it.
        self.route = next(
            (r for r in routes if getattr(r, "path", None) == PATH and "POST" in (getattr(r, "methods", None) or ())),
            None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        messages, body, failure = await self._read(receive)
        replay = _replay(messages, receive, failure)
        ordinary = self._ordinary(scope, body) if body is not None else None
        if ordinary is None:
            await self.app(scope, replay, send)  # the full route answers, errors included
            return
        submit, secret, idempotency_key = ordinary
        state = scope["app"].state
        try:
            identity = await identify(state, secret)
            response: Response = await answer_submit(state.governor, identity, submit, idempotency_key)
        except FarameshError as exc:
            response = faramesh_error_response(exc)
        if self.route is not None:
            scope["route"] = self.route
        await response(scope, replay, send)

    async def _read(self, receive: Receive) -> tuple[list[Message], bytes | None, Exception | None]:
        """The messages read, the whole body, and what reading raised. The body is None
        when the client went away or the body runs over the limit (reading stops there).
        A failure (the framework's own body limit, say) is raised again to the route when
        it reads that far, so the route's error handling answers it as always."""
        messages: list[Message] = []
        size = 0
        while True:
            try:
                message = await receive()
            except Exception as exc:
                return messages, None, exc
            messages.append(message)
            if message["type"] != "http.request":
                return messages, None, None
            size += len(message.get("body", b""))
            if self.max_body_size is not None and size > self.max_body_size:
                return messages, None, None
            if not message.get("more_body", False):
                return messages, b"".join(m.get("body", b"") for m in messages), None

    def _ordinary(self, scope: Scope, body: bytes) -> tuple[SubmitBody, str, str | None] | None:
        content_type = authorization = idempotency_key = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value if content_type is None else b""
            elif name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value.decode("latin-1")
            elif name == b"idempotency-key":
                if idempotency_key is not None:
                    return None
                idempotency_key = value.decode("latin-1")
        if content_type is None or content_type.split(b";")[0].strip().lower() != b"application/json":
            return None
        secret = bearer_secret(authorization)
        if secret is None or b"\\u0000" in body:
            return None
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict) or strictness_problem(body) is not None:
            return None
        try:
            submit = SubmitBody.model_validate(parsed)
        except ValidationError:
            return None
        return submit, secret, idempotency_key


def _replay(messages: list[Message], receive: Receive, failure: Exception | None) -> Receive:
    """A receive that hands on the messages already read (and then what reading raised),
    then the client's own."""
    pending = list(messages)
    raised = [failure] if failure is not None else []

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        if raised:
            raise raised.pop()
        return await receive()

    return replayed
