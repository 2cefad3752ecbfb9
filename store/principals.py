"""Principals: the people and agents who hold API tokens, their roles and the agents they speak for.

A token is random, shown once, and stored only as its SHA-256 (a token is 32 random bytes: a
fast hash is enough, there is nothing to brute-force). Every change is a new versioned row.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
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
    services: list[str] = Field(default_factory=list, description="service names its spans may carry (empty: any)")
    tenant: str = Field(default="", description="the tenant its spans must belong to (empty: any)")
    created_at: datetime | None = None
    created_by: str = ""
    revoked: bool = False
    token_hint: str = Field(default="", description="the token's first characters, to tell tokens apart")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class PrincipalsRepository:
    """Principals as versioned rows; token lookups cached for ``cache_s`` (a revocation made
    through this process takes effect at once, one made through another within ``cache_s``)."""

    def __init__(self, engine: Engine, db: str, cache_s: float = 5.0) -> None:
        self.engine = engine
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def _latest(self, where: str, params: dict) -> list[tuple]:
        return self.engine.query(
            "principals",
            "SELECT Name, Kind, Roles, Agents, CreatedAt, CreatedBy, Revoked, TokenHint, TokenHash, Services, Tenant FROM ("
            f"SELECT Name, argMax(Kind, Version) AS Kind, argMax(Roles, Version) AS Roles, "
            "argMax(Agents, Version) AS Agents, argMax(Services, Version) AS Services, "
            "argMax(Tenant, Version) AS Tenant, argMax(CreatedAt, Version) AS CreatedAt, "
            "argMax(CreatedBy, Version) AS CreatedBy, argMax(Revoked, Version) AS Revoked, "
            "argMax(TokenHint, Version) AS TokenHint, argMax(TokenHash, Version) AS TokenHash "
            f"FROM {self.db}.principals GROUP BY Name) WHERE {where} ORDER BY Name",
            params,
        )

    @staticmethod
    def _principal(row: tuple) -> Principal:
        name, kind, roles, agents, created_at, created_by, revoked, hint, _, services, tenant = row
        return Principal(name=name, kind=kind, roles=list(roles), agents=list(agents), services=list(services),
                         tenant=tenant, created_at=created_at, created_by=created_by, revoked=bool(revoked),
                         token_hint=hint)

    def create(self, *, name: str, kind: str, roles: list[str], agents: list[str], created_by: str,
               services: list[str] | None = None, tenant: str = "") -> tuple[Principal, str]:
        """A new principal (or a new token for a revoked one); the token, which is not kept."""
        token = new_token()
        self._write(Principal(name=name, kind=kind, roles=roles, agents=agents, services=services or [], tenant=tenant,
                              created_by=created_by, token_hint=token[:10]), token_hash(token))
        found = self.get(name=name)
        assert found is not None
        return found, token

    def _write(self, principal: Principal, digest: str) -> None:
        p = principal
        self.engine.insert(
            "write_principal", f"{self.db}.principals",
            [[p.name], [p.kind], [p.roles], [p.agents], [p.services], [p.tenant], [digest], [p.token_hint],
             [datetime.now(tz=timezone.utc)], [p.created_by], [int(p.revoked)], [time.time_ns()]],
            ["Name", "Kind", "Roles", "Agents", "Services", "Tenant", "TokenHash", "TokenHint", "CreatedAt", "CreatedBy",
             "Revoked", "Version"],
        )
        with self._lock:
            self._cache.clear()

    def get(self, *, name: str) -> Principal | None:
        rows = self._latest("Name = {name:String}", {"name": name})
        return self._principal(rows[0]) if rows else None

    def all(self) -> list[Principal]:
        return [self._principal(row) for row in self._latest("1", {})]

    def by_token(self, *, token: str) -> Principal | None:
        """The live principal holding this token, or None (unknown or revoked)."""
        digest = token_hash(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        rows = self._latest("TokenHash = {digest:String} AND Revoked = 0", {"digest": digest})
        found = self._principal(rows[0]) if rows else None
        with self._lock:
            if len(self._cache) > 10_000:  # unknown tokens are cached too: bound what a token sprayer can fill
                self._cache.clear()
            self._cache[digest] = (now, found)
        return found

    def revoke(self, *, name: str) -> Principal | None:
        rows = self._latest("Name = {name:String}", {"name": name})
        if not rows:
            return None
        self._write(self._principal(rows[0]).model_copy(update={"revoked": True}), rows[0][8])
        return self.get(name=name)
