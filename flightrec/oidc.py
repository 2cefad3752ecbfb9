"""OpenID Connect ID tokens as API credentials: who a signed-in person is, as their identity provider says.

With ``oidc_issuer`` set, a Bearer credential shaped like a JWT is checked here: its signature against
the issuer's keys (discovery document -> ``jwks_uri``, fetched and cached by ``jwt.PyJWKClient``), RS256
or ES256 only (never ``none`` nor an HMAC, which would let the public key sign), ``iss`` equal to the
issuer, ``aud`` holding ``oidc_audience`` (the dashboards' client id), ``exp`` with a small leeway. The
token only says who: the ``oidc_name_claim`` value must name a principal an admin created beforehand
(kind person), whose roles apply. Every refusal says why.
"""

from __future__ import annotations

import re
import threading
import time
from functools import lru_cache
from typing import Any

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

ALGORITHMS = ("RS256", "ES256")
LEEWAY_S = 30
DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_RETRY_S = 10.0  # a failed discovery fetch is retried no sooner than this
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class OidcConfig(BaseModel):
    """What the API trusts: one issuer, one audience, the claim that names the principal."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    audience: str
    name_claim: str = "email"


class Discovery(BaseModel):
    """The part of the issuer's discovery document the API reads."""

    issuer: str
    jwks_uri: str


class TokenRefused(Exception):
    """The ID token is not accepted; ``reason`` says why (shown to the caller)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnreachable(Exception):
    """The issuer's discovery document or keys could not be read: nothing can be checked now."""


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated base64url parts (the signature may be empty, as in ``alg: none``)."""
    return bool(_JWT_SHAPE.match(token))


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class Verifier:
    """Checks ID tokens of one issuer; the discovery document and the key set are fetched on first use."""

    def __init__(self, config: OidcConfig, timeout_s: float = 5.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._keys: jwt.PyJWKClient | None = None
        self._failed_at = 0.0

    def _key_client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is not None:
                return self._keys
            if time.monotonic() - self._failed_at < DISCOVERY_RETRY_S:
                raise IssuerUnreachable(f"the discovery document of {self.config.issuer} could not be read a moment "
                                        "ago; retrying shortly")
            url = self.config.issuer.rstrip("/") + DISCOVERY_PATH
            try:
                response = httpx.get(url, timeout=self.timeout_s, follow_redirects=True)
                response.raise_for_status()
                discovery = Discovery.model_validate(response.json())
            except (httpx.HTTPError, ValueError, ValidationError) as exc:
                self._failed_at = time.monotonic()
                raise IssuerUnreachable(f"cannot read the issuer's discovery document {url}: {exc}") from exc
            if not _same_issuer(discovery.issuer, self.config.issuer):
                self._failed_at = time.monotonic()
                raise IssuerUnreachable(f"the discovery document {url} names issuer {discovery.issuer!r}, "
                                        f"not {self.config.issuer!r} (FLIGHTREC_OIDC_ISSUER)")
            self._keys = jwt.PyJWKClient(discovery.jwks_uri, cache_keys=True, lifespan=300, timeout=self.timeout_s)
            return self._keys

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; TokenRefused naming the reason, IssuerUnreachable if keys are out of reach."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"not a readable ID token: {exc}") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRefused(f"ID token algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})")
        try:
            key = self._key_client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnreachable(f"cannot read the keys of {self.config.issuer}: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise TokenRefused(f"the ID token is not signed by a key of {self.config.issuer} ({exc})") from exc
        try:
            return jwt.decode(token, key, algorithms=list(ALGORITHMS), audience=self.config.audience,
                              issuer=self.config.issuer, leeway=LEEWAY_S,
                              options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError as exc:
            raise TokenRefused("the ID token has expired: sign in again") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRefused(f"the ID token is not for this API (audience {self.config.audience!r} expected)") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRefused(f"the ID token is from another issuer ({self.config.issuer!r} expected)") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRefused("the ID token's signature does not verify (altered or signed by another key)") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"the ID token is not valid: {exc}") from exc

    def name(self, token: str) -> str:
        """The principal name the token's ``name_claim`` carries (a verified token only)."""
        claims = self.claims(token)
        claim = self.config.name_claim
        value = claims.get(claim)
        if not isinstance(value, str) or not value.strip():
            raise TokenRefused(f"the ID token carries no {claim!r} claim naming who signed in (FLIGHTREC_OIDC_NAME_CLAIM)")
        if claim == "email" and claims.get("email_verified") is False:
            raise TokenRefused(f"the identity provider has not verified the email {value!r}")
        return value.strip()


@lru_cache(maxsize=4)
def verifier(config: OidcConfig) -> Verifier:
    """One verifier per configuration in this process, so the discovery document and keys are cached."""
    return Verifier(config)
