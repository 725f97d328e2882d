"""Strict JSON request bodies: parsed with orjson, which refuses NaN/Infinity,
integers beyond 64 bits and nesting deeper than 1024 levels; objects that repeat a
key are refused too."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r} in an object")
        seen.add(key)


def find_duplicate_key(body: bytes) -> str | None:
    """A message naming a key that an object repeats, else None.

    orjson keeps the last of repeated keys while other parsers keep the first, so a
    body like {"amount": 500, "amount": 5} could be judged on one value and executed
    with the other. Such bodies are refused. Only called on bodies orjson accepted,
    so this second pass sees valid JSON of bounded depth.
    """
    if body.count(b'"') < 4:  # fewer than two keys: nothing can repeat
        return None
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
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
            problem = find_duplicate_key(body)
            if problem is not None:
                raise json.JSONDecodeError(problem, "", 0)
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
