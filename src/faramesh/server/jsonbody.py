"""Strict JSON request bodies: parsed with orjson, which refuses NaN/Infinity and
nesting deeper than 1024 levels. Objects that repeat a key, integers outside the
64-bit range and decimals a double cannot hold as written (which orjson would round)
are refused too (see :mod:`faramesh.jsonstrict`), and so is a NUL character (U+0000)
in any string or key (422 naming the field)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from faramesh.jsonstrict import strictness_problem
from faramesh.validation import refuse_nul


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                # FastAPI turns json.JSONDecodeError into a 422 that names the problem.
                raise json.JSONDecodeError(str(exc), body.decode("utf-8", "replace")[:200], 0) from None
            problem = strictness_problem(body)
            if problem is not None:
                raise json.JSONDecodeError(problem, "", 0)
        return self._json


async def _refuse_nul_in_body(request: Request) -> None:
    """Raise InvalidInput naming the field when a JSON body's strings hold a NUL.

    JSON can carry NUL only as the escape \\u0000, so bodies without that text (all
    ordinary ones) are not walked. A body that does not parse is left to the handler,
    which reports it.
    """
    body = await request.body()  # kept on the request, so the handler reads it again for free
    if b"\\u0000" not in body:
        return
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    refuse_nul(value, "" if isinstance(value, dict) else "body")


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            strict = StrictJSONRequest(request.scope, request.receive)
            if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                await _refuse_nul_in_body(strict)
            return await handler(strict)

        return strict_handler


class FastJSONResponse(Response):
    """JSON responses encoded with orjson (several times faster than json.dumps).

    Same output as Starlette's JSONResponse for what the API returns: compact, UTF-8,
    non-ASCII kept raw. Values that JSON cannot hold (NaN, integers beyond 64 bits)
    never reach a response: the API refuses them on the way in.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
