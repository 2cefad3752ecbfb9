"""The one settings object. Every field has a default and a description; env vars are ``FLIGHTREC_*``."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flightrec.collector.prices import DEFAULT_PRICES, ModelPrice
from flightrec.rollback.systems import DEFAULT_RISK_RULES, OwnAddress, Risk, RiskRule, SystemSpec, UndoPolicy

if TYPE_CHECKING:  # the parts' configs are built on demand: a client command needs none of them
    from flightrec.collector import IntakeConfig, WalConfig, WriterConfig
    from flightrec.collector.rates import RatesConfig
    from flightrec.collector.redact import RedactionConfig
    from flightrec.collector.health import HealthPolicy
    from flightrec.detectors.pager import PagerConfig
    from flightrec.detectors.runner import DetectorsConfig
    from flightrec.evidence.sequencer import SequencerConfig
    from flightrec.leader import LeaderConfig
    from flightrec.store import StoreConfig
    from flightrec.store.rules import RuleSet
    from flightrec.oidc import OidcConfig

LOOPBACK_NAMES = {"localhost"}
MIN_TOKEN_LENGTH = 16
MIN_RETENTION_DAYS = 180  # EU AI Act Art. 19 / 26(6): at least six months
CONFIG_ENV = "FLIGHTREC_CONFIG"


class SettingsFileError(ValueError):
    """The settings file cannot be read or names settings that do not exist."""


class SettingsFile(TomlConfigSettingsSource):
    """The TOML settings file named by ``FLIGHTREC_CONFIG``: keys are setting names without the prefix.

    Stricter than environment variables: a key that is no setting is an error naming it,
    so a typo does not silently leave a default in force.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise SettingsFileError(f"settings file {path} does not exist ({CONFIG_ENV})")
        try:
            super().__init__(settings_cls, toml_file=path)
        except ValueError as exc:  # tomllib.TOMLDecodeError names the line and column
            raise SettingsFileError(f"settings file {path}: {exc}") from exc
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise SettingsFileError(
                f"settings file {path}: unknown setting(s) {', '.join(unknown)}; "
                "`flightrec config` lists every setting (use the name without FLIGHTREC_, in lower case)"
            )


class Settings(BaseSettings):
    """Flight Recorder configuration (``flightrec config`` prints what is in effect)."""

    model_config = SettingsConfigDict(env_prefix="FLIGHTREC_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Options first, then ``FLIGHTREC_*`` environment variables, then the settings file, then defaults."""
        path = os.environ.get(CONFIG_ENV, "").strip()
        file = (SettingsFile(settings_cls, Path(path)),) if path else ()
        return (init_settings, env_settings, *file)

    host: str = Field(default="127.0.0.1", description="interface the HTTP and gRPC servers bind")
    http_port: int = Field(default=4318, ge=0, le=65535, description="OTLP/HTTP and API port")
    grpc_port: int = Field(default=4317, ge=0, le=65535, description="OTLP/gRPC port")
    data: Path = Field(default=Path(".flightrec"), description="data directory: embedded store and WAL")
    store: str | None = Field(
        default=None, description="store DSN: chdb:///dir or http(s)://user:pass@host:port/db (default: DATA/data)"
    )
    database: str = Field(default="flightrec", description="ClickHouse database name")
    cluster: str | None = Field(default=None, description="ClickHouse data cluster: spans, links and logs sharded by "
                                "trace (*_local Replicated + Distributed tables); needs state_cluster")
    state_cluster: str | None = Field(default=None, description="ClickHouse state cluster (one shard, every node a "
                                      "replica): controls, alerts, plans, audit, principals, holds, migrations")
    retention_days: int = Field(
        default=180, ge=0, description="days spans and their object links are kept (legal holds exempt what they "
        "cover); 0 keeps forever; below 180 needs retention_short_acknowledged")
    log_retention_days: int | None = Field(
        default=None, ge=0, description="days log records (GenAI events) are kept; unset: as retention_days; "
        "below 180 needs retention_short_acknowledged")
    alert_retention_days: int = Field(default=0, ge=0, description="days alerts are kept after their last change; "
                                      "0 keeps forever")
    outbox_retention_days: int = Field(default=30, ge=0, description="days the pager outbox keeps delivery records; "
                                       "0 keeps forever")
    retention_materialize: bool = Field(
        default=True, description="when a retention setting changes, apply it to stored rows at once (ClickHouse "
        "rewrites the table's parts once); false: metadata only, stored rows follow as their parts merge")
    retention_short_acknowledged: bool = Field(
        default=False, description="accept span or log retention below 180 days (EU AI Act Art. 19 and 26(6) ask "
        "deployers of high-risk AI systems to keep logs at least six months); unset, such a setting is refused")
    ingest_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated shared Bearer tokens that speak for any agent (a gateway's); "
        "set: every batch needs a token (one of these, or an agent's from `flightrec tokens create --role agent`)"
    )
    require_ingest_token: bool = Field(
        default=False, description="refuse batches without a token even when no shared ingest token is set "
        "(agents then send their own agent tokens)")
    foreign_spans: Literal["reject", "mark"] = Field(
        default="reject", description="spans an agent's token does not speak for (another agent, service or tenant): "
        "reject them with partial_success, or keep them and let stories show they were claimed by that token")
    api_token: SecretStr | None = Field(default=None, description="Bearer token required on /api/*")
    api_url: str = Field(default="http://127.0.0.1:4318", description="API base URL for client commands")
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer URL whose ID tokens the API accepts as Bearer credentials "
        "(keys from ISSUER/.well-known/openid-configuration); unset: tokens only")
    oidc_audience: str | None = Field(
        default=None, description="the client id an ID token must be issued to (its aud); required with oidc_issuer")
    oidc_name_claim: str = Field(
        default="email", min_length=1, description="the ID token claim naming the principal (created beforehand by "
        "an admin: flightrec tokens create --name NAME --role ROLE)")
    records_url: str | None = Field(
        default=None,
        description="the demo system of record (flightrec records); when set, registered for undo as system 'records'",
    )
    systems: dict[str, SystemSpec] = Field(
        default_factory=dict,
        description="systems of record undo may call, by name (JSON; a [systems.NAME] table in the settings file): "
        "base_url, auth, credentials_env (a variable name), paths, read_paths, handlers",
    )
    undo_risk_rules: list[RiskRule] = Field(
        default_factory=lambda: list(DEFAULT_RISK_RULES),
        description="risk of undoing an action by name and amount, first match wins (JSON list of "
        "{action, above, risk}); high-risk undos need a second person's approval",
    )
    undo_default_risk: Risk = Field(default="high", description="risk of undoing an action no rule names")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="largest OTLP body, decompressed")
    max_backlog_spans: int = Field(default=400_000, ge=1, description="WAL backlog past which intake answers 503")
    wal_fsync: bool = Field(default=True, description="fsync each batch before acknowledging it")
    max_future_s: int = Field(
        default=86_400, ge=1, description="clock skew allowed: spans, ends and events further ahead are rejected"
    )
    body_timeout_s: float = Field(default=30.0, gt=0, description="longest time a client may take to send a body")
    quarantine_after: int = Field(
        default=3, ge=1, description="inserts tried before a segment the store refuses for its data is quarantined"
    )
    writer_stuck_after_s: float = Field(
        default=60.0, gt=0, description="a head segment failing this long makes /api/health answer 503"
    )
    quarantine_alarm_segments: int = Field(
        default=3, ge=1, description="segments quarantined within 10 minutes that make /api/health answer 503"
    )
    writer_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        ge=0,
        description="processes that decode WAL segments into rows (0: in the writer thread)",
    )
    ingest_parser: Literal["python", "engine"] = Field(
        default="python", description="who parses WAL segments' OTLP and flattens spans: writer worker processes "
        "(python) or ClickHouse's Protobuf input format (engine; no worker processes)")
    node_id: str | None = Field(
        default=None, min_length=1, description="this process's id among the collectors of one store (unset: "
        "host name, pid and a random suffix)")
    leader_lease_s: float = Field(
        default=15.0, gt=0, description="seconds a leader's lease lasts after its last renewal; a dead leader is "
        "replaced within leader_lease_s + leader_renew_s")
    leader_renew_s: float = Field(
        default=5.0, gt=0, description="seconds between the leader's renewals (and the others' reads of the "
        "lease); below leader_lease_s")
    detect_interval_s: float = Field(default=60.0, ge=0, description="seconds between detector passes in serve (0: off)")
    detect_window_hours: float = Field(default=24.0, gt=0, description="how far back a detector pass looks")
    checkpoint_interval_s: float = Field(
        default=60.0, ge=0, description="seconds between signed checkpoints of the evidence log, when it grew (0: on demand only)"
    )
    export_max_spans: int = Field(default=200_000, ge=1, description="most spans one evidence bundle may hold "
                                  "(a larger scope is refused with 413: narrow it)")
    export_max_stories: int = Field(default=500, ge=0, description="most object stories rendered into one evidence "
                                    "bundle (the manifest says when cut)")
    bundle_verify_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="largest evidence bundle "
                                         "POST /api/evidence/bundles/verify accepts")
    run_budget_usd: float | None = Field(default=0.05, description="mean USD per run above which an agent alerts")
    object_budget_usd: float | None = Field(default=5.0, description="USD per business object per window that alerts")
    agent_budgets_usd: dict[str, float] = Field(default_factory=dict, description="USD per agent per window (JSON)")
    ui_url: str = Field(default="http://127.0.0.1:8501", description="dashboards base URL, for links in alerts")
    pagerduty_routing_key: SecretStr | None = Field(default=None, description="PagerDuty Events v2 routing key")
    pagerduty_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events v2 endpoint"
    )
    alertmanager_url: str | None = Field(default=None, description="Alertmanager base URL (alerts posted to /api/v2/alerts)")
    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming webhook URL")
    webhook_url: str | None = Field(default=None, description="generic webhook receiving alert transitions as JSON")
    webhook_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks signing secret (whsec_<base64>) for the webhook; unset: unsigned"
    )
    pager_max_attempts: int = Field(
        default=20, ge=1, description="attempts per page and destination before it is marked failed and alerted on"
    )
    pager_backoff_initial_s: float = Field(
        default=1.0, ge=0, description="wait before a page's first retry; doubles each retry, with jitter"
    )
    pager_backoff_max_s: float = Field(default=300.0, ge=0, description="longest wait between a page's attempts")
    alertmanager_resend_s: float = Field(
        default=60.0, gt=0, description="firing alerts are re-sent to Alertmanager this often (endsAt: 4 intervals ahead)"
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="price overrides by model-name prefix (longest wins), over the genai-prices package: USD per "
        "million tokens (JSON: {prefix: {input_per_mtok, output_per_mtok, cache_read_per_mtok, cache_write_per_mtok}})"
    )
    link_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="more attribute -> object type links (JSON), added to the built-in ones (ticket.id, order.id, ...)",
    )
    rules: Path | None = Field(
        default=None,
        description="a TOML rules file ([[links]], [[fields]]) whose rules apply ahead of the built-in conventions; "
        "`flightrec rules check FILE` validates one",
    )
    default_tenant: str = Field(default="default", min_length=1, description="the tenant of spans that name none")
    audit_key: Path | None = Field(
        default=None,
        description="Ed25519 key file signing the audit log's heads, made on first start (mode 0600; default "
        "DATA/keys/audit-ed25519.pem); server processes sharing one ClickHouse should share one key file",
    )

    redaction_enabled: bool = Field(
        default=True, description="redact personal data at intake, before the WAL (spans and log records): "
        "matches become [redacted:RULE]; false keeps what agents send as sent")
    redaction_rules: Annotated[list[Literal["email", "card", "iban", "phone"]], NoDecode] = Field(
        default_factory=lambda: ["email", "card", "iban", "phone"],
        description="comma-separated built-in rules in force: email, card (Luhn-checked, card-network prefixes), "
        "iban (mod-97 checked), phone (international +CC notation only)")
    redaction_patterns: dict[str, str] = Field(
        default_factory=dict, description="user rules, name -> Python regular expression (JSON; a "
        "[redaction_patterns] table in the settings file): each match becomes [redacted:NAME]; a pattern that "
        "does not compile or nests unbounded repeats is refused at start")
    redaction_allow_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["flightrec.*", "service.*", "telemetry.*"],
        description="comma-separated attribute key globs never redacted (any case); the attributes link rules "
        "read (flightrec.object.id, ticket.id, ... and the rules file's) are always added")
    redaction_deny_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated attribute key globs (any case) whose whole value becomes [redacted:deny], "
        "e.g. *password*,*secret*,http.request.header.authorization; the allow list wins; each glob adds a scan "
        "of every request")

    @field_validator("api_token")
    @classmethod
    def _strong_api_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the API token must be at least {MIN_TOKEN_LENGTH} characters (an empty one is no "
                             "token: unset the variable instead); e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'")
        return value

    @model_validator(mode="after")
    def _retention_at_least_six_months(self) -> Settings:
        for name in ("retention_days", "log_retention_days"):
            days = getattr(self, name)
            if days and days < MIN_RETENTION_DAYS and not self.retention_short_acknowledged:
                raise ValueError(
                    f"FLIGHTREC_{name.upper()}={days} is below {MIN_RETENTION_DAYS} days, the six months EU AI Act "
                    "Art. 19 and 26(6) ask deployers of high-risk AI systems to keep logs: set it to "
                    f"{MIN_RETENTION_DAYS} or more (0 keeps forever), or set FLIGHTREC_RETENTION_SHORT_ACKNOWLEDGED=true "
                    "if this deployment is not bound by them")
        return self

    @model_validator(mode="after")
    def _renew_within_lease(self) -> Settings:
        from flightrec.leader import check_timing

        check_timing(self.leader_lease_s, self.leader_renew_s)
        return self

    @model_validator(mode="after")
    def _oidc_needs_audience(self) -> Settings:
        if self.oidc_issuer and not (self.oidc_audience or "").strip():
            raise ValueError("FLIGHTREC_OIDC_ISSUER is set without FLIGHTREC_OIDC_AUDIENCE: set it to the client id "
                             "the dashboards sign in with (an ID token for any other client is refused)")
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError(f"FLIGHTREC_OIDC_ISSUER {self.oidc_issuer!r} is not an http(s) URL")
        return self

    def oidc_config(self) -> OidcConfig | None:
        """What ID tokens the API accepts, or None (no issuer configured)."""
        if not self.oidc_issuer:
            return None
        from flightrec.oidc import OidcConfig

        return OidcConfig(issuer=self.oidc_issuer, audience=(self.oidc_audience or "").strip(),
                          name_claim=self.oidc_name_claim)

    @field_validator("ingest_tokens", "redaction_rules", "redaction_allow_keys", "redaction_deny_keys", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redaction_patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:  # the check's module loads only when there are patterns to check
            return value
        from flightrec.collector.redact import check_patterns

        return check_patterns(value)  # refused at start, naming the pattern

    @property
    def store_dsn(self) -> str:
        return self.store or f"chdb://{(self.data / 'data').resolve()}"

    def audit_key_path(self) -> Path:
        from flightrec.evidence.keys import KEY_FILE

        return self.audit_key or self.data / KEY_FILE

    def audit_head_path(self) -> Path:
        """The newest signed audit head this server made, kept beside the key, outside the store."""
        from flightrec.evidence.audit_heads import HEAD_FILE

        return self.data / HEAD_FILE

    def store_config(self) -> StoreConfig:
        from flightrec.store.config import StoreConfig

        return StoreConfig(
            dsn=self.store_dsn, database=self.database, cluster=self.cluster, state_cluster=self.state_cluster, retention_days=self.retention_days,
            log_retention_days=self.log_retention_days, alert_retention_days=self.alert_retention_days,
            outbox_retention_days=self.outbox_retention_days, retention_materialize=self.retention_materialize,
            rules=self.user_rules(), default_tenant=self.default_tenant,
        )

    def user_rules(self) -> RuleSet:
        """The rules file's rules, then ``link_aliases``, ahead of the built-in conventions.

        A bad file raises :class:`flightrec.store.rules.RulesError` naming its lines.
        """
        from flightrec.store.rules import RuleSet, alias_rules, parse_rules

        rules = RuleSet()
        if self.rules is not None:
            try:
                text = self.rules.read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsFileError(f"rules file {self.rules}: {exc.strerror or exc}") from exc
            rules = parse_rules(text, name=str(self.rules))
        return RuleSet(links=[*rules.links, *alias_rules(self.link_aliases).links], fields=rules.fields)

    def wal_config(self) -> WalConfig:
        from flightrec.collector.wal import WalConfig

        return WalConfig(directory=self.data / "wal", fsync=self.wal_fsync, max_backlog_spans=self.max_backlog_spans)

    def intake_config(self) -> IntakeConfig:
        from flightrec.collector.pipeline import IntakeConfig

        return IntakeConfig(
            ingest_tokens=self.ingest_tokens, require_token=self.require_ingest_token, foreign_spans=self.foreign_spans,
            max_body_bytes=self.max_body_bytes, retention_days=self.retention_days,
            max_future_s=self.max_future_s, body_timeout_s=self.body_timeout_s, redaction=self.redaction_config(),
        )

    def redaction_config(self) -> RedactionConfig:
        from flightrec.collector.redact import RedactionConfig

        return RedactionConfig(enabled=self.redaction_enabled, rules=self.redaction_rules,
                               patterns=self.redaction_patterns, allow_keys=self.redaction_allow_keys,
                               deny_keys=self.redaction_deny_keys)

    def health_policy(self) -> HealthPolicy:
        from flightrec.collector.health import HealthPolicy

        return HealthPolicy(writer_stuck_after_s=self.writer_stuck_after_s,
                            writer_slow_after_s=min(10.0, self.writer_stuck_after_s),
                            quarantine_alarm_segments=self.quarantine_alarm_segments)

    def writer_config(self) -> WriterConfig:
        from flightrec.collector.writer import WriterConfig

        return WriterConfig(workers=self.writer_workers, quarantine_after=self.quarantine_after,
                            parser=self.ingest_parser)

    def sequencer_config(self) -> SequencerConfig:
        from flightrec.evidence.sequencer import SequencerConfig

        return SequencerConfig(checkpoint_interval_s=self.checkpoint_interval_s)

    def leader_config(self) -> LeaderConfig:
        """The lease's timing; ``exclusive`` for an embedded store, which no other process can open."""
        from flightrec.leader import LeaderConfig

        return LeaderConfig(lease_s=self.leader_lease_s, renew_s=self.leader_renew_s,
                            exclusive=self.store_dsn.startswith("chdb://"))

    def leader_node(self) -> str:
        from flightrec.leader import default_node_id

        return self.node_id or default_node_id()

    def rates_config(self) -> RatesConfig:
        from flightrec.collector.rates import RatesConfig

        return RatesConfig(prices=self.prices)

    def detectors_config(self) -> DetectorsConfig:
        from flightrec.detectors.budgets import BudgetConfig
        from flightrec.detectors.runner import DetectorsConfig

        return DetectorsConfig(
            window_hours=self.detect_window_hours,
            budgets=BudgetConfig(run_usd=self.run_budget_usd, object_usd=self.object_budget_usd,
                                 agent_usd=self.agent_budgets_usd),
            ui_url=self.ui_url,
        )

    def pager_config(self) -> PagerConfig:
        from flightrec.detectors.pager import PagerConfig

        return PagerConfig(
            pagerduty_routing_key=self.pagerduty_routing_key, pagerduty_url=self.pagerduty_url,
            alertmanager_url=self.alertmanager_url, slack_webhook_url=self.slack_webhook_url,
            webhook_url=self.webhook_url, ui_url=self.ui_url,
            webhook_secret=self.webhook_secret, max_attempts=self.pager_max_attempts,
            backoff_initial_s=self.pager_backoff_initial_s, backoff_max_s=self.pager_backoff_max_s,
            alertmanager_resend_s=self.alertmanager_resend_s,
        )

    def demo_systems(self) -> dict[str, SystemSpec]:
        """The demo system of record as a registered system, when ``records_url`` is set."""
        if not self.records_url:
            return {}
        from flightrec.demo import fleet_catalog as cat

        return {cat.RECORDS_SYSTEM: SystemSpec(base_url=self.records_url, paths=list(cat.RECORDS_UNDO_PATHS),
                                               read_paths=list(cat.RECORDS_READ_PATHS),
                                               handlers=sorted(set(cat.HANDLER_UNDO.values())))}

    def own_address(self) -> OwnAddress:
        """This server's addresses, which undo never calls."""
        return OwnAddress(host=self.host, ports=sorted({self.http_port, self.grpc_port} - {0}), api_url=self.api_url)

    def undo_policy(self) -> UndoPolicy:
        return UndoPolicy(rules=self.undo_risk_rules, default=self.undo_default_risk)

    def binds_loopback_only(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without an API token."""
        if not self.binds_loopback_only() and self.api_token is None:
            raise ValueError(
                f"refusing to bind {self.host}: set FLIGHTREC_API_TOKEN (the API would be open to the network) "
                "or bind 127.0.0.1"
            )

    def described(self) -> list[tuple[str, object, str]]:
        """(env var, value in effect as JSON data, description) for every setting; secrets masked."""
        rows = []
        values = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            value = values[name]
            if value and (isinstance(getattr(self, name), SecretStr) or name == "ingest_tokens"):
                value = "********"
            elif name == "store" and value:
                from flightrec.store.config import StoreConfig

                value = StoreConfig(dsn=value).target().describe()
            rows.append((f"FLIGHTREC_{name.upper()}", value, field.description or ""))
        return rows
