"""`/v1/grants`: standing grants (approver or admin). The rules are in faramesh.service.grants."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from faramesh.errors import Forbidden
from faramesh.model import Identity
from faramesh.server.auth import CurrentIdentity
from faramesh.server.jsonbody import FastJSONResponse, StrictJSONRoute
from faramesh.service import Governor
from faramesh.service.grants import check_spec

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, default_response_class=FastJSONResponse)


class GrantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: StrictStr = Field(max_length=128, examples=["refund"])
    operation: StrictStr = Field(max_length=128, examples=["process"])
    agent_id: StrictStr | None = Field(default=None, max_length=200, description="only this agent (default: any)")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='conditions on params in the policy\'s operators, e.g. {"amount_lte": 200}',
        examples=[{"amount_lte": 200}],
    )
    expires_in: StrictStr | StrictInt | StrictFloat = Field(
        description="how long the grant lasts: seconds or 15m, 1h, 8h (at most 7d)", examples=["1h"]
    )
    max_uses: StrictInt | None = Field(default=None, ge=1, le=1_000_000, description="stop after this many uses")
    reason: StrictStr = Field(max_length=2000, examples=["Refunds up to 200 are routine this afternoon"])


def _gov(request: Request) -> Governor:
    g: Governor = request.app.state.governor
    return g


def _decider(identity: Identity, verb: str) -> None:
    if not identity.can_decide:
        raise Forbidden(f"only approver and admin keys can {verb} grants")


@router.post("/grants", status_code=201, summary="Create a standing grant (approver or admin)", tags=["grants"])
async def create_grant(body: GrantBody, request: Request, identity: CurrentIdentity) -> FastJSONResponse:
    _decider(identity, "create")
    spec = check_spec(
        tool=body.tool,
        operation=body.operation,
        agent_id=body.agent_id,
        params=body.params,
        expires_in=body.expires_in,
        max_uses=body.max_uses,
        reason=body.reason,
    )
    grant = await run_in_threadpool(_gov(request).create_grant, identity, spec)
    return FastJSONResponse(grant, status_code=201)


@router.get("/grants", summary="List standing grants (approver or admin)", tags=["grants"])
async def list_grants(
    request: Request, identity: CurrentIdentity, active: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    _decider(identity, "list")
    return {"grants": await run_in_threadpool(lambda: _gov(request).list_grants(identity, active_only=active))}


@router.delete("/grants/{grant_id}", summary="Revoke a standing grant (approver or admin)", tags=["grants"])
async def revoke_grant(
    grant_id: Annotated[str, Field(min_length=1, max_length=32)], request: Request, identity: CurrentIdentity
) -> dict[str, Any]:
    _decider(identity, "revoke")
    return await run_in_threadpool(_gov(request).revoke_grant, identity, grant_id)
