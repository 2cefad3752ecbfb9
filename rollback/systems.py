"""The systems of record an operator trusts undo to call, and the operator's risk policy.

Pure models and checks, no I/O beyond name resolution, so the settings can import them.

An undo descriptor on a span only *names* a registered system and an operation on it
(``flightrec.undo.system`` + a path for ``http``, or a handler name); everything that decides
where a request goes — scheme, host, port, credentials — comes from the registration here.
A path must match one of the system's allowed templates, segment by segment, where ``{name}``
stands for one plain id segment (letters, digits, ``._~-``; never ``..``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

Risk = Literal["low", "medium", "high"]
NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
PLACEHOLDER = re.compile(r"^\{[a-z_][a-z0-9_]*\}$")
HANDLER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class Refused(Exception):
    """A target the registry will not call; the message says why, in one sentence."""


def _template(path: str) -> str:
    if not path.startswith("/") or path != path.strip():
        raise ValueError(f"path template {path!r} must start with '/'")
    for segment in path.split("/")[1:]:
        if not (PLACEHOLDER.match(segment) or (SEGMENT.match(segment) and segment not in (".", ".."))):
            raise ValueError(
                f"path template {path!r}: segment {segment!r} is neither plain text (letters, digits, ._~-) "
                "nor one {placeholder}"
            )
    return path


class SystemSpec(BaseModel):
    """How to reach one system of record, and what undo may do there."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="http(s)://host[:port][/prefix]; no user:password, query or fragment")
    auth: Literal["none", "bearer", "basic"] = Field(
        default="none", description="how the credentials are sent: Authorization Bearer, or Basic from user:password"
    )
    credentials_env: str = Field(
        default="", description="name of the environment variable holding the credentials (never the value)"
    )
    paths: list[str] = Field(default_factory=list, description="POST path templates undo may call, e.g. /refunds/{id}/undo")
    read_paths: list[str] = Field(
        default_factory=list, description="GET path templates a read-back check may read, e.g. /refunds/{id}"
    )
    handlers: list[str] = Field(default_factory=list, description="undo handler names allowed to act on this system")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="timeout of each call")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {value!r} must be an http(s) URL with a host")
        if "@" in parts.netloc or parts.username is not None or parts.password is not None:
            raise ValueError("base_url must not carry user:password; name an environment variable in credentials_env")
        if parts.query or parts.fragment or "\\" in value:
            raise ValueError(f"base_url {value!r} must not have a query or a fragment")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"base_url {value!r}: {exc}") from exc
        return value.strip().rstrip("/")

    @field_validator("credentials_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if value and not ENV_NAME.match(value):
            raise ValueError(f"credentials_env {value!r} must be an environment variable name (A-Z, 0-9, _)")
        return value

    @field_validator("paths", "read_paths")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        return [_template(path) for path in value]

    @field_validator("handlers")
    @classmethod
    def _handlers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not HANDLER_NAME.match(name):
                raise ValueError(f"handler name {name!r} must be letters, digits, '._-'")
        return value


class SystemOfRecord(SystemSpec):
    """A registered system as the API shows it: where it came from, and whether its credentials are set."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=NAME_PATTERN)
    source: Literal["settings", "demo", "api"] = "api"
    registered_by: str = ""
    registered_at: datetime | None = None
    credentials_present: bool = Field(default=False, description="the named environment variable is set (now)")


def match_path(path: str, templates: Iterable[str]) -> str | None:
    """The template a concrete path matches, or None. The path must be plain: see :func:`plain_path`."""
    segments = path.split("/")[1:]
    for template in templates:
        pattern = template.split("/")[1:]
        if len(pattern) == len(segments) and all(
            PLACEHOLDER.match(want) or want == got for want, got in zip(pattern, segments, strict=True)
        ):
            return template
    return None


def plain_path(path: str) -> str:
    """The path if it is a plain relative path on a system; raise Refused naming what is wrong."""
    if not isinstance(path, str) or not path:
        raise Refused("the undo names no path")
    if "://" in path or path.startswith("//") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
        raise Refused("the undo target is an absolute URL; only paths on a registered system are called")
    if "@" in path:
        raise Refused("the undo target carries user information ('@'); credentials come only from the registry")
    if not path.startswith("/"):
        raise Refused(f"the undo path {path[:80]!r} must start with '/'")
    for segment in path.split("/")[1:]:
        if not SEGMENT.match(segment) or segment in (".", ".."):
            raise Refused(f"the undo path {path[:80]!r} has a segment that is not a plain id (letters, digits, ._~-)")
    return path


# --- the server's own address ------------------------------------------------------------------


class OwnAddress(BaseModel):
    """Where this Flight Recorder server answers: undo never calls it."""

    host: str = "127.0.0.1"
    ports: list[int] = Field(default_factory=list)
    api_url: str = ""

    def _local_ips(self) -> set[str]:
        ips = {self.host}
        try:
            import psutil

            for addresses in psutil.net_if_addrs().values():
                ips.update(address.address.split("%", 1)[0] for address in addresses
                           if address.family in (socket.AF_INET, socket.AF_INET6))
        except Exception:  # noqa: BLE001 - interface listing is best effort; loopback is caught below
            pass
        return ips

    def problem(self, base_url: str) -> str:
        """Why calling ``base_url`` would reach this server ('' when it would not)."""
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        own_api = urlsplit(self.api_url) if self.api_url else None
        targets = _resolve(parts.hostname or "", port)
        if not targets:
            return f"its host {parts.hostname!r} does not resolve"
        local = self._local_ips()
        api_targets = _resolve(own_api.hostname or "", own_api.port or 80) if own_api and own_api.hostname else set()
        for ip in targets:
            address = ipaddress.ip_address(ip)
            mapped = getattr(address, "ipv4_mapped", None) or address
            is_local = mapped.is_loopback or mapped.is_unspecified or ip in local or str(mapped) in local
            if (is_local and port in self.ports) or (ip in api_targets and port == (own_api.port if own_api else 0)):
                return f"it is this Flight Recorder server's own address ({ip} port {port})"
        return ""


def _resolve(host: str, port: int) -> set[str]:
    if not host:
        return set()
    try:
        return {info[4][0].split("%", 1)[0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return set()


# --- the operator's risk policy ----------------------------------------------------------------


class RiskRule(BaseModel):
    """Actions whose name matches ``action`` (shell pattern) moving more than ``above`` have ``risk``."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(default="*", min_length=1, description="action name or pattern, e.g. refund.issue, ticket.*")
    above: float | None = Field(
        default=None, ge=0, description="applies only to amounts above this (in any currency); unset: any amount"
    )
    risk: Risk


# First match wins. The thresholds are the demo fleet's own: what it would act on alone stays
# below them, what it asks a person about is above.
DEFAULT_RISK_RULES: tuple[RiskRule, ...] = (
    RiskRule(action="refund.issue", above=150.0, risk="high"),
    RiskRule(action="credit.apply", above=100.0, risk="high"),
    RiskRule(action="plan.change", above=150.0, risk="high"),
    RiskRule(action="refund.issue", risk="medium"),
    RiskRule(action="credit.apply", risk="medium"),
    RiskRule(action="plan.change", risk="medium"),
    RiskRule(action="order.update", risk="medium"),
    RiskRule(action="ticket.*", risk="low"),
    RiskRule(action="email.send", risk="low"),
)


class UndoPolicy(BaseModel):
    """The risk that decides whether undoing an action needs a second person's approval."""

    rules: list[RiskRule] = Field(default_factory=lambda: list(DEFAULT_RISK_RULES))
    default: Risk = "high"

    def risk(self, action: str, amount: float) -> tuple[Risk, str]:
        """The risk of undoing ``action`` moving ``amount``, and the rule that decided it."""
        for rule in self.rules:
            if fnmatchcase(action, rule.action) and (rule.above is None or amount > rule.above):
                at = f" above {rule.above:,.2f}" if rule.above is not None else ""
                return rule.risk, f"operator policy: {rule.action}{at} is {rule.risk} risk"
        return self.default, f"operator policy: actions no rule names are {self.default} risk"
