"""Who sends a batch, and what it may speak for (issue 10: an ingest token names its agents).

Tokens: a shared ingest token (``FLIGHTREC_INGEST_TOKENS``) speaks for any agent, as a gateway
in front of a fleet does; an agent principal's token (``flightrec tokens create --role agent
--agents A,B``) speaks only for its agents, services and tenant. A span claims the agent the rules
in force derive for it (the engine evaluates them: :meth:`MeaningRepository.claims`), so a span
that names no agent is credited to its ``service.name`` and must be spoken for too.

The sender's name is stamped on every resource as ``flightrec.ingest.principal`` (a value a
sender put there is overwritten or removed): the stored row says which token delivered it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Literal

from flightrec.collector.errors import ErrorKind, IngestError
from flightrec.store.models import INGEST_PRINCIPAL as PRINCIPAL_ATTRIBUTE
from flightrec.store.principals import Principal
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from pydantic import BaseModel, Field

__all__ = ["PRINCIPAL_ATTRIBUTE", "IngestAuth", "Sender", "check_claims", "drop_spans", "stamp"]
ForeignSpans = Literal["reject", "mark"]


class Sender(BaseModel):
    """The holder of a batch's token; ``restricted`` when it may speak only for some agents."""

    name: str = Field(default="", description="the agent principal ('' : open ingest or a shared ingest token)")
    agents: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list, description="empty: any service")
    tenant: str = Field(default="", description="empty: any tenant")

    @property
    def restricted(self) -> bool:
        return bool(self.name)

    def speaks_for(self) -> set[str]:
        """Agent names its spans may be credited to: its agents, and its services (spans naming no agent)."""
        return set(self.agents) | set(self.services)


OPEN = Sender()


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise IngestError(ErrorKind.UNAUTHENTICATED, "Authorization must be 'Bearer <token>'")
    return token.strip()


class IngestAuth:
    """Resolves ``Authorization`` to a :class:`Sender`; a token, when sent, is always checked."""

    def __init__(self, shared_tokens: list[str], require_token: bool,
                 principal_of: Callable[[str], Principal | None]) -> None:
        self.shared_tokens = shared_tokens
        self.require_token = require_token or bool(shared_tokens)
        self.principal_of = principal_of

    def sender(self, authorization: str | None) -> Sender:
        token = _bearer(authorization)
        if token is None:
            if self.require_token:
                raise IngestError(ErrorKind.UNAUTHENTICATED, "missing ingest token: send Authorization: Bearer <token>")
            return OPEN
        if any(hmac.compare_digest(token, known) for known in self.shared_tokens):
            return OPEN
        try:
            principal = self.principal_of(token)
        except Exception as exc:  # the store is unreachable: the token cannot be checked now
            raise IngestError(ErrorKind.UNAVAILABLE, f"cannot check the ingest token now ({exc}); retry",
                              retry_after_s=5) from exc
        if principal is None:
            raise IngestError(ErrorKind.UNAUTHENTICATED, "ingest token not recognised (unknown or revoked)")
        if principal.kind != "agent":
            raise IngestError(ErrorKind.FORBIDDEN, f"the token of {principal.name} ({', '.join(principal.roles)}) is a "
                              "person's: ingest takes an agent's token (flightrec tokens create --role agent "
                              "--agents NAME) or a shared ingest token (FLIGHTREC_INGEST_TOKENS)")
        return Sender(name=principal.name, agents=principal.agents, services=principal.services, tenant=principal.tenant)


def stamp(request: Any, sender: Sender) -> bool:
    """Set (or, for an unnamed sender, remove) the principal attribute on every resource; True if changed."""
    changed = False
    for resource_spans in request.resource_spans:
        attributes = resource_spans.resource.attributes
        found = [index for index, item in enumerate(attributes) if item.key == PRINCIPAL_ATTRIBUTE]
        for index in reversed(found):
            del attributes[index]
        changed |= bool(found)
        if sender.name:
            attributes.append(KeyValue(key=PRINCIPAL_ATTRIBUTE))
            attributes[-1].value.string_value = sender.name
            changed = True
    return changed


class ClaimCheck(BaseModel):
    """The spans of a request a restricted sender may not send, by position, with the reason."""

    foreign: dict[tuple[int, int, int], str] = Field(default_factory=dict)


def _label(span: Any) -> str:
    return f"span {span.name[:200]!r} ({span.span_id.hex()})"


def drop_spans(request: Any, positions: set[tuple[int, int, int]]) -> None:
    """Remove the spans at these (resource, scope, span) positions, in place."""
    for r, s, i in sorted(positions, reverse=True):
        del request.resource_spans[r].scope_spans[s].spans[i]


def check_claims(request: Any, sender: Sender,
                 derive: Callable[[list[tuple[dict[str, str], dict[str, str]]]], list[tuple[str, str]]],
                 attributes: Callable[[Any], dict[str, str]]) -> ClaimCheck:
    """Which spans claim an agent, service or tenant ``sender`` does not speak for.

    ``derive`` maps (span attributes, resource attributes) to the (agent, tenant) the rules give.
    """
    check = ClaimCheck()
    allowed = sender.speaks_for()
    positions: list[tuple[int, int, int]] = []
    maps: list[tuple[dict[str, str], dict[str, str]]] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        service = resource.get("service.name", "")
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                if sender.services and service not in sender.services:
                    check.foreign[(r, s, i)] = (f"{_label(span)}: service {service!r} is not one {sender.name} may "
                                                f"send as ({', '.join(sender.services)})")
                    continue
                positions.append((r, s, i))
                maps.append((attributes(span.attributes), resource))
    derived = derive(maps) if maps else []
    for position, (span_map, resource), (agent, tenant) in zip(positions, maps, derived, strict=True):
        r, s, i = position
        label = _label(request.resource_spans[r].scope_spans[s].spans[i])
        if agent not in allowed:
            origin = " (a span that names no agent is credited to its service.name)" if (
                agent == resource.get("service.name") and agent not in span_map.values()) else ""
            check.foreign[position] = (f"{label}: agent {agent!r}{origin} is not one {sender.name} speaks for "
                                       f"({', '.join(sorted(allowed))})")
        elif sender.tenant and tenant != sender.tenant:
            check.foreign[position] = f"{label}: tenant {tenant!r} is not {sender.name}'s ({sender.tenant})"
    return check
