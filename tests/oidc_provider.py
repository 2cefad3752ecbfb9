"""A small, real OpenID provider for tests: an HTTP server on 127.0.0.1 (http.server in a thread).

It serves discovery, its JWKS (an RSA key made with ``cryptography``), an authorization endpoint that
redirects straight back with a code for the configured user (no login form: the person is whoever
``user`` says), and a token endpoint that checks the client's secret, the code, the redirect URI and
PKCE, then answers a signed ID token carrying the authorization request's nonce. ``mint`` signs any
token for tests that need a bad one (another issuer, expired, wrong audience, alg none, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class User:
    """Who signs in at the provider; ``exp_in`` is the ID token's lifetime (negative: already expired)."""

    email: str
    name: str = ""
    email_verified: bool = True
    exp_in: int = 3600


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    method: str | None
    user: User


@dataclass
class OidcProvider:
    client_id: str = "flightrec-dashboards"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user: User = field(default_factory=lambda: User("alice@example.com", "Alice"))
    kid: str = "test-key-1"
    ec_kid: str = "test-key-ec"

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_key = ec.generate_private_key(ec.SECP256R1())  # published too: ES256 tokens verify
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.grants: dict[str, Grant] = {}
        self.issued: list[dict[str, Any]] = []  # the claims of every ID token the token endpoint gave out
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- running -------------------------------------------------------------------------------
    def start(self) -> OidcProvider:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def issuer(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # --- tokens --------------------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec_key.public_key()))
        return {"keys": [{**rsa_jwk, "kid": self.kid, "use": "sig", "alg": "RS256"},
                         {**ec_jwk, "kid": self.ec_kid, "use": "sig", "alg": "ES256"}]}

    def claims(self, user: User | None = None, **override: Any) -> dict[str, Any]:
        user = user or self.user
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": hashlib.sha256(user.email.encode()).hexdigest()[:20], "aud": self.client_id,
                  "iat": now, "exp": now + user.exp_in, "email": user.email, "email_verified": user.email_verified,
                  "name": user.name or user.email}
        claims.update(override)
        return {key: value for key, value in claims.items() if value is not None}

    def mint(self, claims: dict[str, Any] | None = None, *, key: Any = None, alg: str = "RS256",
             kid: str | None = None) -> str:
        """An ID token signed with this provider's key (or ``key``), claims as given or the user's defaults."""
        return jwt.encode(claims if claims is not None else self.claims(), key or self.key, algorithm=alg,
                          headers={"kid": kid or self.kid})

    def unsigned(self, claims: dict[str, Any] | None = None) -> str:
        """``alg: none``: no signature at all."""
        header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": self.kid}).encode())
        return f"{header}.{b64url(json.dumps(claims or self.claims()).encode())}."

    def hmac_with_public_key(self, claims: dict[str, Any] | None = None) -> str:
        """HS256 keyed with the public key's PEM: the classic key-confusion forgery (PyJWT will not make one)."""
        import hmac

        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = b64url(json.dumps(claims or self.claims()).encode())
        signature = hmac.new(self.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(signature)}"

    # --- the endpoints -------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, headers, JSON body): a redirect back with a code, or an error."""
        if query.get("client_id") != self.client_id:
            return 400, {}, {"error": "unauthorized_client", "error_description": "unknown client_id"}
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
            return 400, {}, {"error": "invalid_request", "error_description": "response_type=code, scope openid"}
        redirect = query.get("redirect_uri", "")
        if not redirect.startswith(("http://127.0.0.1:", "http://localhost:")):
            return 400, {}, {"error": "invalid_request", "error_description": f"redirect_uri {redirect!r} refused"}
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.grants[code] = Grant(self.client_id, redirect, query.get("nonce"), query.get("code_challenge"),
                                      query.get("code_challenge_method"), self.user)
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return 302, {"Location": f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(back)}"}, {}

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.lower().startswith("basic "):
            client_id, _, client_secret = (unquote_plus(part) for part in
                                           base64.b64decode(authorization[6:]).decode().partition(":"))
        if client_id != self.client_id or not secrets.compare_digest(client_secret, self.client_secret):
            return 401, {"error": "invalid_client"}
        with self.lock:
            grant = self.grants.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        if grant.challenge:
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != grant.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}
        claims = self.claims(grant.user, nonce=grant.nonce)
        with self.lock:
            self.issued.append(claims)
        return 200, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 3600,
                     "id_token": self.mint(claims), "scope": "openid email profile"}


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._answer(200, provider.discovery())
            elif url.path == "/jwks":
                self._answer(200, provider.jwks())
            elif url.path == "/authorize":
                status, headers, body = provider.authorize(query)
                self._answer(status, body, headers)
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path == "/token":
                status, body = provider.token(form, self.headers.get("Authorization", ""))
                self._answer(status, body)
            else:
                self._answer(404, {"error": "not_found"})

    return Handler
