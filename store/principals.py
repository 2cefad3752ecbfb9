"""Principals: the people and agents who hold API tokens, their roles and the agents they speak for.

A token is random, shown once, and stored only as its SHA-256 (a token is 32 random bytes: a
fast hash is enough, there is nothing to brute-force). Every change is a new versioned row.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from flightrec.store.engine import Engine

TOKEN_PREFIX = "frt_"


class Principal(BaseModel):
    """Who a request acts as."""

    name: str
    kind: str = Field(description="person, agent, or local (no auth configured, loopback only)")
    roles: list[str]
    agents: list[str] = Field(default_factory=list, description="agent names an agent principal speaks for")
    created_at: datetime | None = None
    created_by: str = ""
    revoked: bool = False
    token_hint: str = Field(default="", description="the token's first characters, to tell tokens apart")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class PrincipalsRepository:
    def __init__(self, engine: Engine, db: str) -> None:
        self.engine = engine
        self.db = db

    def _latest(self, where: str, params: dict) -> list[tuple]:
        return self.engine.query(
            "principals",
            "SELECT Name, Kind, Roles, Agents, CreatedAt, CreatedBy, Revoked, TokenHint, TokenHash FROM ("
            f"SELECT Name, argMax(Kind, Version) AS Kind, argMax(Roles, Version) AS Roles, "
            "argMax(Agents, Version) AS Agents, argMax(CreatedAt, Version) AS CreatedAt, "
            "argMax(CreatedBy, Version) AS CreatedBy, argMax(Revoked, Version) AS Revoked, "
            "argMax(TokenHint, Version) AS TokenHint, argMax(TokenHash, Version) AS TokenHash "
            f"FROM {self.db}.principals GROUP BY Name) WHERE {where} ORDER BY Name",
            params,
        )

    @staticmethod
    def _principal(row: tuple) -> Principal:
        name, kind, roles, agents, created_at, created_by, revoked, hint, _ = row
        return Principal(name=name, kind=kind, roles=list(roles), agents=list(agents), created_at=created_at,
                         created_by=created_by, revoked=bool(revoked), token_hint=hint)

    def create(self, *, name: str, kind: str, roles: list[str], agents: list[str], created_by: str) -> tuple[Principal, str]:
        """A new principal (or a new token for a revoked one); the token, which is not kept."""
        token = new_token()
        self._write(name=name, kind=kind, roles=roles, agents=agents, created_by=created_by,
                    digest=token_hash(token), hint=token[:10], revoked=False)
        found = self.get(name=name)
        assert found is not None
        return found, token

    def _write(self, *, name: str, kind: str, roles: list[str], agents: list[str], created_by: str, digest: str,
               hint: str, revoked: bool) -> None:
        self.engine.insert(
            "write_principal", f"{self.db}.principals",
            [[name], [kind], [roles], [agents], [digest], [hint], [datetime.now(tz=timezone.utc)], [created_by],
             [int(revoked)], [time.time_ns()]],
            ["Name", "Kind", "Roles", "Agents", "TokenHash", "TokenHint", "CreatedAt", "CreatedBy", "Revoked", "Version"],
        )

    def get(self, *, name: str) -> Principal | None:
        rows = self._latest("Name = {name:String}", {"name": name})
        return self._principal(rows[0]) if rows else None

    def all(self) -> list[Principal]:
        return [self._principal(row) for row in self._latest("1", {})]

    def by_token(self, *, token: str) -> Principal | None:
        """The live principal holding this token, or None (unknown or revoked)."""
        rows = self._latest("TokenHash = {digest:String} AND Revoked = 0", {"digest": token_hash(token)})
        return self._principal(rows[0]) if rows else None

    def revoke(self, *, name: str) -> Principal | None:
        rows = self._latest("Name = {name:String}", {"name": name})
        if not rows:
            return None
        current = self._principal(rows[0])
        self._write(name=name, kind=current.kind, roles=current.roles, agents=current.agents, created_by=current.created_by,
                    digest=rows[0][8], hint=current.token_hint, revoked=True)
        return self.get(name=name)
