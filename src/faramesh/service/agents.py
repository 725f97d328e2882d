"""Which agent an action belongs to: the key's binding, else what the request claims."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faramesh.errors import Forbidden, InvalidInput
from faramesh.model import Identity
from faramesh.validation import MAX_AGENT_ID, check_agent_id, printable

if TYPE_CHECKING:
    from faramesh.service.submit import Submission

# What the published faramesh-sdk sends when its user gave no agent id.
PLACEHOLDER_AGENT_ID = "default-agent"


def _claims(identity: Identity, sub: Submission) -> list[tuple[str, str]]:
    """The agent ids the request claims, with the field each came from."""
    claims: list[tuple[str, str]] = []
    ctx_claim = sub.context.get("agent_id")
    if ctx_claim is not None:
        claims.append(("context.agent_id", check_agent_id(ctx_claim, "context.agent_id")))
    if sub.agent_id is not None:
        top = check_agent_id(sub.agent_id)
        if top != PLACEHOLDER_AGENT_ID or identity.agent_id == PLACEHOLDER_AGENT_ID:
            claims.append(("agent_id", top))
    return claims


def resolve_agent(identity: Identity, sub: Submission) -> str:
    claims = _claims(identity, sub)
    if identity.agent_id is not None:
        for field, claim in claims:
            if claim != identity.agent_id:
                raise Forbidden(
                    f"this key is bound to agent {identity.agent_id!r} and cannot act as {claim!r}",
                    field=field,
                )
        return identity.agent_id
    distinct = {claim for _, claim in claims}
    if len(distinct) > 1:
        raise InvalidInput("agent_id and context.agent_id disagree", field="agent_id")
    if distinct:
        return distinct.pop()
    if sub.agent_id is not None:
        return sub.agent_id  # the placeholder, when nothing better was given
    name = identity.name
    if name.strip() and len(name) <= MAX_AGENT_ID and printable(name):  # as check_agent_id's rule
        return name
    # A name that cannot be stored as an agent id (keys made before names were checked).
    return f"key:{identity.key_id}"
