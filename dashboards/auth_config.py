"""The dashboards' OpenID Connect sign-in config: Streamlit's ``[auth]`` secrets, checked before launch.

``flightrec ui --oidc-secrets FILE`` hands FILE to Streamlit as its secrets (``--secrets.files``); the
file is Streamlit's own format (``[auth]`` with ``redirect_uri``, ``cookie_secret``, ``expose_tokens``
and a provider: flat ``client_id`` / ``client_secret`` / ``server_metadata_url``, or ``[auth.NAME]``
sections). It is read here first so a mistake stops the start with its reason instead of a sign-in
button that fails in the browser. ``expose_tokens`` must hold ``"id"``: the dashboards call the API
with the person's ID token. No Streamlit import: the CLI checks the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
MIN_COOKIE_SECRET = 16
CALLBACK_PATH = "/oauth2callback"


class AuthConfigError(ValueError):
    """The secrets file cannot serve as the dashboards' sign-in config; the message says why."""


class ProviderConfig(BaseModel):
    """One identity provider as Streamlit (Authlib) reads it; other keys (client_kwargs, ...) pass through."""

    model_config = ConfigDict(extra="allow")

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    server_metadata_url: str
    label: str = Field(default="", description="the sign-in button's name for it (flightrec's key; Streamlit "
                       "ignores it); default: the table's name, or the provider's host for the flat keys")

    def button_label(self, name: str) -> str:
        """``Sign in with <this>``."""
        if self.label.strip():
            return self.label.strip()
        if name == "default":
            return urlsplit(self.server_metadata_url).hostname or "your identity provider"
        return name.capitalize()

    @field_validator("server_metadata_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL (the provider's .well-known/openid-configuration)")
        return value


class AuthSection(BaseModel):
    """Streamlit's ``[auth]`` table, as far as the dashboards depend on it."""

    model_config = ConfigDict(extra="allow")

    redirect_uri: str
    cookie_secret: str = Field(min_length=MIN_COOKIE_SECRET)
    expose_tokens: list[str]

    @field_validator("expose_tokens", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("expose_tokens")
    @classmethod
    def _id_exposed(cls, value: list[str]) -> list[str]:
        if "id" not in value:
            raise ValueError('must hold "id" (expose_tokens = ["id"]): the dashboards call the API with the ID token')
        return value

    @field_validator("redirect_uri")
    @classmethod
    def _callback(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or not urlsplit(value).path.endswith(CALLBACK_PATH):
            raise ValueError(f"{value!r} must be the dashboards' own URL ending in {CALLBACK_PATH}, "
                             f"e.g. http://localhost:8501{CALLBACK_PATH}")
        return value

    def providers(self) -> dict[str, ProviderConfig]:
        """Providers by Streamlit's name for them (``default`` for the flat keys), each checked."""
        extra = self.model_extra or {}
        sections = {name: value for name, value in extra.items() if isinstance(value, dict) and name != "client_kwargs"}
        if any(key in extra for key in PROVIDER_KEYS):
            sections = {"default": {key: extra[key] for key in (*PROVIDER_KEYS, "client_kwargs", "label") if key in extra},
                        **sections}
        found: dict[str, ProviderConfig] = {}
        for name, section in sections.items():
            if "_" in name:
                raise AuthConfigError(f"[auth.{name}]: Streamlit refuses provider names with an underscore")
            try:
                found[name] = ProviderConfig.model_validate(section)
            except ValidationError as exc:
                where = "[auth]" if name == "default" else f"[auth.{name}]"
                raise AuthConfigError(f"{where}: {_reasons(exc)}") from exc
        if not found:
            raise AuthConfigError("[auth] names no identity provider: give client_id, client_secret and "
                                  "server_metadata_url, in [auth] itself or in an [auth.NAME] table")
        return found


def _reasons(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                     for error in exc.errors())


def load_auth(path: Path, port: int | None = None) -> AuthSection:
    """The checked ``[auth]`` section of ``path``; AuthConfigError naming what is wrong.

    ``port``: the dashboards' port; a loopback ``redirect_uri`` must come back to it.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthConfigError(f"{path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise AuthConfigError(f"{path}: {exc}") from exc
    if not isinstance(data.get("auth"), dict):
        raise AuthConfigError(f"{path} has no [auth] table (Streamlit's sign-in settings)")
    try:
        auth = AuthSection.model_validate(data["auth"])
    except ValidationError as exc:
        raise AuthConfigError(f"{path} [auth]: {_reasons(exc)}") from exc
    try:
        auth.providers()
    except AuthConfigError as exc:
        raise AuthConfigError(f"{path} {exc}") from exc
    callback = urlsplit(auth.redirect_uri.replace("{port}", str(port or 0)))
    if port is not None and callback.hostname in ("127.0.0.1", "localhost", "::1") and callback.port != port:
        raise AuthConfigError(f"{path} [auth]: redirect_uri {auth.redirect_uri} comes back to port {callback.port}, "
                              f"but the dashboards listen on {port} (--port)")
    return auth
