"""The routes every tool call hits, answered without the framework's per-request work.

`POST /v1/actions` (submit), `POST /v1/decide` and `POST /v1/gate/decide` (dry runs) sit in
front of every tool call an agent makes, so their cost is the gate's cost. FastAPI's
routing over every route of the API, its dependency solving, its body-limit and
exception wrappers and our own middleware layers cost more CPU than the decision and
the durable write together. This plain ASGI layer is the outermost one. It answers such
a request itself when everything about it is ordinary:

- the request guard (guard.py) has nothing to refuse in its head;
- JSON content type, a body within the limit that parses strictly (no repeated keys,
  exact numbers, no NUL) into what `SubmitBody` accepts;
- one `Authorization: Bearer` header and, for a submit, at most one `Idempotency-Key`.

It authenticates and answers through the same functions the FastAPI routes use
(`server.auth.identify`, `server.api.answer_submit`, `answer_decide`, `answer_gate`),
answers refusals with the same `faramesh_error_response` and an unexpected failure with
the same `unexpected_error_response`, adds the same security headers and counts the
request in the same HTTP metrics. Anything else (a malformed body, a missing key, an
odd header) is handed to the full application unchanged, body included, which gives
the documented error. So this layer decides nothing of its own: it only skips work.

It is left out when requests are traced (OTEL): the tracing middleware's SERVER span
must cover every request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from faramesh.errors import FarameshError
from faramesh.jsonstrict import strictness_problem
from faramesh.model import Identity
from faramesh.server.api import SubmitBody, answer_decide, answer_gate, answer_submit
from faramesh.server.auth import bearer_secret, identify
from faramesh.server.errors import faramesh_error_response, unexpected_error_response
from faramesh.server.guard import RequestGuard
from faramesh.server.security_headers import raw_headers, with_defaults
from faramesh.service import Governor

log = logging.getLogger("faramesh.server")

# route -> how it answers an ordinary request: (governor, identity, body, Idempotency-Key)
Answer = Callable[[Governor, Identity, SubmitBody, "str | None"], Awaitable[Response]]


async def _submit(g: Governor, identity: Identity, body: SubmitBody, idempotency_key: str | None) -> Response:
    return await answer_submit(g, identity, body, idempotency_key)


async def _decide(g: Governor, identity: Identity, body: SubmitBody, _key: str | None) -> Response:
    return answer_decide(g, identity, body)


async def _gate(g: Governor, identity: Identity, body: SubmitBody, _key: str | None) -> Response:
    return answer_gate(g, identity, body)


ROUTES: dict[str, tuple[Answer, bool]] = {
    # path (also the metrics' route label) -> (answer, takes an Idempotency-Key)
    "/v1/actions": (_submit, True),
    "/v1/decide": (_decide, False),
    "/v1/gate/decide": (_gate, False),
}


class HotPath:
    def __init__(
        self,
        app: RequestGuard,
        *,
        max_body_size: int | None,
        security_headers: Mapping[str, str],
    ) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.security = raw_headers(security_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        governor: Governor | None = getattr(scope["app"].state, "governor", None) if route is not None else None
        if route is None or governor is None or self.app.refusal(scope) is not None:
            await self.app(scope, receive, send)  # the full application answers, refusals included
            return
        started = time.perf_counter()
        messages, body, failure = await self._read(receive)
        replay = _replay(messages, receive, failure)
        answer, takes_key = route
        ordinary = self._ordinary(scope, body, takes_key) if body is not None else None
        if ordinary is None:
            await self.app(scope, replay, send)  # the full route answers, errors included
            return
        parsed, secret, idempotency_key = ordinary
        try:
            identity = await identify(scope["app"].state, secret)
            response = await answer(governor, identity, parsed, idempotency_key)
        except FarameshError as exc:
            response = faramesh_error_response(exc)
        except Exception as exc:
            log.exception("unhandled error on POST %s", scope["path"])
            response = unexpected_error_response("POST", exc, {})
        await self._respond(send, response)
        governor.telemetry.metrics.http_request(
            "POST", scope["path"], response.status_code, time.perf_counter() - started
        )

    async def _respond(self, send: Send, response: Response) -> None:
        headers = with_defaults(response.raw_headers, self.security)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _read(self, receive: Receive) -> tuple[list[Message], bytes | None, Exception | None]:
        """The messages read, the whole body, and what reading raised. The body is None
        when the client went away or the body runs over the limit (reading stops there).
        A failure is raised again to the route when it reads that far, so the route's
        error handling answers it as always."""
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

    def _ordinary(self, scope: Scope, body: bytes, takes_key: bool) -> tuple[SubmitBody, str, str | None] | None:
        content_type = authorization = idempotency_key = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value if content_type is None else b""
            elif name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value.decode("latin-1")
            elif name == b"idempotency-key" and takes_key:
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
