"""Store configuration: which ClickHouse, which database, how long to keep spans."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, Field, model_validator

from flightrec.store.retention import RetentionPolicy
from flightrec.store.rules import RuleSet
from flightrec.store.topology import Topology, check_clusters


class EngineTarget(BaseModel):
    """Where a DSN points: an embedded chDB directory or a ClickHouse server."""

    kind: str = Field(description="'chdb' (embedded, in-process) or 'server' (HTTP interface)")
    path: str | None = Field(default=None, description="chDB data directory (embedded only)")
    host: str | None = None
    port: int | None = None
    secure: bool = False
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    database: str | None = None

    def describe(self) -> str:
        """A printable form with no secrets in it."""
        if self.kind == "chdb":
            return f"chdb://{self.path}"
        scheme = "https" if self.secure else "http"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}/{self.database or ''}"


def parse_dsn(dsn: str) -> EngineTarget:
    """Parse ``chdb:///dir`` or ``http(s)://user:pass@host:port/db``; raise ValueError on anything else."""
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        location = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not location or location in ("/", "memory", ":memory:"):
            raise ValueError(f"chdb DSN {dsn!r} names no data directory; use chdb:///path/to/dir")
        return EngineTarget(kind="chdb", path=str(Path(unquote(location)).resolve()))
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ValueError(f"server DSN {dsn!r} names no host; use http://user:pass@host:8123/db")
        secure = parsed.scheme == "https"
        try:
            port = parsed.port or (8443 if secure else 8123)
        except ValueError as exc:
            raise ValueError(f"server DSN {dsn!r} has an invalid port") from exc
        database = unquote(parsed.path.strip("/")) or None
        return EngineTarget(
            kind="server",
            host=parsed.hostname,
            port=port,
            secure=secure,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            database=database,
        )
    raise ValueError(
        f"unsupported store DSN {dsn!r}: use chdb:///path/to/dir (embedded) "
        "or http(s)://user:pass@host:port/db (ClickHouse server)"
    )


class StoreConfig(BaseModel):
    """Everything the store needs; complete defaults, validated at load."""

    dsn: str = Field(default="chdb://./.flightrec/data", description="chdb:///dir or http(s)://user:pass@host:port/db")
    database: str = Field(default="flightrec", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="ClickHouse database")
    cluster: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="ClickHouse data cluster: spans, links and logs sharded by trace (*_local Replicated tables "
                    "+ Distributed tables); needs state_cluster",
    )
    state_cluster: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="ClickHouse state cluster: one shard whose replicas are every node, for controls, alerts, "
                    "plans, audit and evidence logs, principals, holds, migrations (required with cluster)",
    )
    retention_days: int = Field(default=180, ge=0, description="span and link TTL in days; 0 keeps them forever")
    log_retention_days: int | None = Field(default=None, ge=0, description="log record TTL in days (None: as spans)")
    alert_retention_days: int = Field(default=0, ge=0, description="alert TTL in days; 0 keeps them forever")
    outbox_retention_days: int = Field(default=30, ge=0, description="pager outbox TTL in days; 0: forever")
    retention_materialize: bool = Field(default=True, description="a changed TTL applies to stored rows at once")
    rules: RuleSet = Field(default_factory=RuleSet, description="the user's derivation rules (ahead of the built-in)")
    default_tenant: str = Field(default="default", description="the tenant of spans that name none")

    @model_validator(mode="after")
    def _clusters_go_together(self) -> "StoreConfig":
        check_clusters(self.cluster, self.state_cluster)
        return self

    def topology(self) -> Topology:
        """Where each table lives (store/topology.py)."""
        return Topology(database=self.database, cluster=self.cluster, state_cluster=self.state_cluster)

    def target(self) -> EngineTarget:
        return parse_dsn(self.dsn)

    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(spans_days=self.retention_days, logs_days=self.log_retention_days,
                               alerts_days=self.alert_retention_days, outbox_days=self.outbox_retention_days,
                               materialize=self.retention_materialize)
