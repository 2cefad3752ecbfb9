"""ID tokens of an OpenID provider as API credentials (issue 10, deliverable 3), against a real
``flightrec serve`` and a real local provider (tests/oidc_provider.py): a token naming alice@example.com
acts as that principal (her roles, her name in the audit log); every forgery or mismatch is refused
401 with its reason, and nothing acts for it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from flightrec.oidc import IssuerUnreachable, OidcConfig, Verifier, looks_like_jwt
from flightrec.settings import Settings
from tests.conftest import ServerProcess, free_port
from tests.oidc_provider import OidcProvider, User, b64url

pytestmark = pytest.mark.slow
ADMIN_TOKEN = "oidc-tests-admin-token-0123456789"
AGENT = "oidc-known-agent"


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    started = OidcProvider().start()
    yield started
    started.stop()


def call(server: ServerProcess, method: str, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def person(server: ServerProcess, name: str, *roles: str, kind: str = "person", **extra: Any) -> str:
    created = call(server, "POST", "/api/principals", json={"name": name, "kind": kind, "roles": list(roles), **extra})
    assert created.status_code == 201, created.text
    return created.json()["token"]


@pytest.fixture(scope="module")
def server(provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Sign-in on, the provider as issuer; alice (sre), carol (revoked), an agent principal named like a
    person, and one agent that has sent spans (so pausing it needs no force)."""
    from tests.otlp_helpers import make_request, make_span

    srv = ServerProcess(tmp_path_factory.mktemp("oidc") / "srv", env={
        "FLIGHTREC_API_TOKEN": ADMIN_TOKEN, "FLIGHTREC_OIDC_ISSUER": provider.issuer,
        "FLIGHTREC_OIDC_AUDIENCE": provider.client_id, "FLIGHTREC_DETECT_INTERVAL_S": "0"}).start()
    try:
        person(srv, "alice@example.com", "sre")
        person(srv, "carol@example.com", "sre")
        assert call(srv, "DELETE", "/api/principals/carol@example.com").json()["revoked"] is True
        person(srv, "bot@example.com", "agent", kind="agent", agents=[AGENT])
        body = make_request([make_span("run", {"gen_ai.agent.name": AGENT})], {"service.name": "svc"})
        assert httpx.post(srv.url + "/v1/traces", content=body.SerializeToString(), timeout=30,
                          headers={"content-type": "application/x-protobuf"}).status_code == 200
        srv.wait_drained()
        yield srv
    finally:
        srv.stop()


def test_an_id_token_acts_as_the_principal_it_names(server: ServerProcess, provider: OidcProvider) -> None:
    token = provider.mint()
    assert looks_like_jwt(token)
    me = call(server, "GET", "/api/whoami", token)
    assert me.status_code == 200, me.text
    assert me.json() | {"agents": []} == {"name": "alice@example.com", "role": "sre", "roles": ["sre"],
                                          "kind": "person", "agents": []}
    paused = call(server, "POST", f"/api/controls/agents/{AGENT}/pause", token,
                  json={"actor": "someone-else", "reason": "signed in with the provider"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused" and paused.json()["actor"] == "alice@example.com"
    acts = [(entry["actor"], entry["act"]) for entry in call(server, "GET", "/api/audit").json()["items"]
            if entry["subject"].endswith(AGENT)]
    assert ("alice@example.com", "pause") in acts, acts
    # her roles apply, no more: an sre may not create principals
    refused = call(server, "POST", "/api/principals", token, json={"name": "mallory", "roles": ["admin"]})
    assert refused.status_code == 403 and "alice@example.com (sre)" in refused.json()["detail"], refused.text
    # ES256 is accepted too (the provider publishes an EC key)
    es = provider.mint(key=provider.ec_key, alg="ES256", kid=provider.ec_kid)
    assert call(server, "GET", "/api/whoami", es).json()["name"] == "alice@example.com"
    resumed = call(server, "POST", f"/api/controls/agents/{AGENT}/resume", token, json={})
    assert resumed.status_code == 200, resumed.text


def test_principal_tokens_still_work_beside_id_tokens(server: ServerProcess) -> None:
    token = person(server, "dave", "viewer")
    assert not looks_like_jwt(token)
    assert call(server, "GET", "/api/whoami", token).json()["name"] == "dave"
    assert call(server, "GET", "/api/whoami", "frt_not-a-token-anyone-holds").status_code == 401


def _tampered(provider: OidcProvider) -> str:
    header, _, signature = provider.mint().split(".")
    payload = b64url(json.dumps(provider.claims(email="admin@example.com")).encode())
    return f"{header}.{payload}.{signature}"


def _other_key(provider: OidcProvider, kid: str) -> str:
    return provider.mint(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), kid=kid)


REFUSALS: dict[str, tuple[Any, str]] = {
    "another issuer": (lambda p: p.mint(p.claims(iss="http://127.0.0.1:9/elsewhere")), "from another issuer"),
    "expired": (lambda p: p.mint(p.claims(exp=int(time.time()) - 120)), "has expired"),
    "wrong audience": (lambda p: p.mint(p.claims(aud="some-other-client")), "not for this API"),
    "tampered payload": (_tampered, "signature does not verify"),
    "alg none": (lambda p: p.unsigned(), "algorithm 'none' is not accepted"),
    "HS256 keyed with the public key": (lambda p: p.hmac_with_public_key(), "algorithm 'HS256' is not accepted"),
    "a key the issuer never published": (lambda p: _other_key(p, "unknown-kid"), "not signed by a key of"),
    "another key under the issuer's kid": (lambda p: _other_key(p, p.kid), "signature does not verify"),
    "no exp": (lambda p: p.mint(p.claims(exp=None)), 'missing the "exp" claim'),
    "no email": (lambda p: p.mint(p.claims(email=None)), "carries no 'email' claim"),
    "unverified email": (lambda p: p.mint(p.claims(email_verified=False)), "has not verified the email"),
    "unknown name": (lambda p: p.mint(p.claims(User("nobody@example.com"))),
                     "no principal named nobody@example.com: an admin creates it with flightrec tokens create "
                     "--name nobody@example.com --role"),
    "revoked name": (lambda p: p.mint(p.claims(User("carol@example.com"))), "carol@example.com is revoked"),
    "an agent principal": (lambda p: p.mint(p.claims(User("bot@example.com"))), "not a person"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_bad_id_token_is_refused_with_its_reason(server: ServerProcess, provider: OidcProvider, case: str) -> None:
    make, reason = REFUSALS[case]
    token = make(provider)
    before = call(server, "GET", f"/api/controls/agents/{AGENT}").json()
    for method, path in (("GET", "/api/whoami"), ("POST", f"/api/controls/agents/{AGENT}/pause")):
        answer = call(server, method, path, token, json={"force": True} if method == "POST" else None)
        assert answer.status_code == 401, (case, answer.status_code, answer.text)
        assert reason in answer.json()["detail"], (case, answer.json()["detail"])
        assert answer.headers["www-authenticate"] == "Bearer"
    assert call(server, "GET", f"/api/controls/agents/{AGENT}").json() == before, "nothing acted for a refused token"


def test_an_unreachable_issuer_is_a_server_problem_not_a_refusal(provider: OidcProvider) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    verifier = Verifier(OidcConfig(issuer=dead, audience=provider.client_id), timeout_s=2)
    with pytest.raises(IssuerUnreachable, match="discovery document"):
        verifier.claims(provider.mint(provider.claims(iss=dead)))
    liar = Verifier(OidcConfig(issuer=provider.issuer + "/tenant", audience=provider.client_id), timeout_s=2)
    with pytest.raises(IssuerUnreachable):  # no discovery document at ISSUER/tenant/.well-known/...
        liar.claims(provider.mint())


def test_the_settings_need_an_audience_with_an_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLIGHTREC_OIDC_AUDIENCE", raising=False)
    with pytest.raises(ValueError, match="FLIGHTREC_OIDC_AUDIENCE"):
        Settings(oidc_issuer="https://id.example.com")
    config = Settings(oidc_issuer="https://id.example.com", oidc_audience="dash").oidc_config()
    assert config == OidcConfig(issuer="https://id.example.com", audience="dash", name_claim="email")
    assert Settings().oidc_config() is None
    assert not looks_like_jwt("frt_abc-DEF_123") and looks_like_jwt("a.b.") and not looks_like_jwt("a.b.c.d")


def test_an_id_token_sent_to_a_server_without_an_issuer_says_so(provider: OidcProvider) -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from flightrec.auth import identify

    app = FastAPI()
    app.state.settings = Settings(api_token=ADMIN_TOKEN, oidc_issuer=None)
    app.get("/who")(lambda principal=Depends(identify): principal.name)
    answer = TestClient(app).get("/who", headers={"Authorization": f"Bearer {provider.mint()}"})
    assert answer.status_code == 401 and "FLIGHTREC_OIDC_ISSUER is unset" in answer.json()["detail"], answer.text
    plain = TestClient(app).get("/who", headers={"Authorization": "Bearer frt_unknown"})
    assert plain.json()["detail"] == "unknown or revoked token"
