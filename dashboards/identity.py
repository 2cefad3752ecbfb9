"""Signing in through an identity provider: Streamlit's ``st.login`` / ``st.user`` / ``st.logout``.

When Streamlit's ``[auth]`` secrets are configured (``flightrec ui --oidc-secrets FILE``, or a
``.streamlit/secrets.toml``), the sign-in page offers "Sign in with <provider>". Once a person is
back from the provider, Streamlit keeps their identity in a signed cookie and exposes the ID token
(``expose_tokens = ["id"]``) in ``st.user.tokens``; the dashboards send that token to the API, which
checks it and acts as the principal its claim names. An expired ID token is refused by the API and
the page asks to sign in again (a new login gives a new token).
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from pydantic import ValidationError

from flightrec.dashboards.auth_config import AuthConfigError, AuthSection


def _auth_secrets() -> dict[str, Any] | None:
    if not st.secrets.load_if_toml_exists():
        return None
    auth = st.secrets.get("auth")
    if not auth:
        return None
    return auth.to_dict() if hasattr(auth, "to_dict") else dict(auth)


def providers() -> tuple[dict[str, str], str]:
    """(provider name -> button label, a problem that stops sign-in with them, or "")."""
    auth = _auth_secrets()
    if auth is None:
        return {}, ""
    try:
        found = AuthSection.model_validate(auth).providers()
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors())
        return {}, f"Signing in with an identity provider is configured but cannot work: [auth] {reasons}"
    except AuthConfigError as exc:
        return {}, f"Signing in with an identity provider is configured but cannot work: {exc}"
    return {name: provider.button_label(name) for name, provider in found.items()}, ""


def logged_in() -> bool:
    """Back from the identity provider in this browser (Streamlit's identity cookie)."""
    try:
        return bool(st.user.get("is_logged_in"))
    except Exception:  # noqa: BLE001 - no script context or no [auth]: nobody is signed in this way
        return False


def id_token() -> str | None:
    """The ID token Streamlit exposes for the signed-in person, or None."""
    if not logged_in():
        return None
    try:
        return st.user.tokens.get("id") or None
    except Exception:  # noqa: BLE001 - tokens not exposed
        return None


def who() -> str:
    """How the provider names the signed-in person (for messages only: the API decides who acts)."""
    return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "someone")


def login(provider: str) -> None:
    """Send the browser to the provider; it comes back to the dashboards' start page, signed in."""
    st.login(provider)


def logout() -> None:
    """Forget the identity cookie (and the provider's session, where it offers an end-session endpoint)."""
    st.logout()
