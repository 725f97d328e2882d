"""The ceiling for submit.py: a bare FastAPI endpoint that parses the same body and echoes it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

app = FastAPI()


class Body(BaseModel):
    tool: str
    operation: str
    params: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/actions", status_code=201)
async def echo(body: Body) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=201)
