"""Strict JSON request bodies: parsed with orjson, which refuses NaN/Infinity and
nesting deeper than 1024 levels. Objects that repeat a key, and integers outside the
64-bit range (which orjson would round to a float), are refused too, and so is a NUL
character (U+0000) in any string or key (422 naming the field)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from faramesh.validation import refuse_nul

MIN_INT = -(2**63)
MAX_INT = 2**64 - 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key[:60]!r} in an object")
        seen.add(key)


def _exact_int(literal: str) -> None:
    if not MIN_INT <= int(literal) <= MAX_INT:
        raise ValueError(
            f"integer {literal[:30]}{'…' if len(literal) > 30 else ''} is outside the 64-bit range; send it as a string"
        )


def strictness_problem(body: bytes) -> str | None:
    """Why a body that orjson accepted must still be refused, or None.

    - A repeated key: orjson keeps the last value while other parsers keep the first,
      so {"amount": 500, "amount": 5} could be judged on one value and run with the other.
    - An integer beyond 64 bits: orjson reads it as the nearest float, so the policy
      would judge (and the audit record) a different number from the one sent.

    A second pass with the standard library, on valid JSON of bounded depth, finds both.
    """
    try:
        json.loads(body, object_pairs_hook=_no_duplicates, parse_int=_exact_int)
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return "nesting is too deep"
    return None


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
