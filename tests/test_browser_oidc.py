"""Signing in to the dashboards with an OpenID provider (issue 10, deliverable 3), in a real browser
(headless Chromium): ``flightrec ui --oidc-secrets`` against a token-protected server that trusts a
real local provider (tests/oidc_provider.py). Alice clicks "Sign in with Local ID", goes through the
provider's authorization and token endpoints (Streamlit's st.login: Authlib, PKCE, nonce) and lands
back signed in as alice@example.com (sre); her pause is recorded under that name. An expired ID token
sends her back to sign in again; a person no admin created is told so; signing out forgets her."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser_support import ARTIFACTS, CHROMIUM, launched_chromium, running_ui
from tests.conftest import ServerProcess
from tests.oidc_provider import OidcProvider, User

pytestmark = pytest.mark.slow
ADMIN_TOKEN = "browser-oidc-admin-token-0123456789"
AGENT = "oidc-browser-agent"
BUTTON = "Sign in with Local ID"
ALICE = User("alice@example.com", "Alice")


class Site:
    def __init__(self, server: ServerProcess, ui: str, provider: OidcProvider) -> None:
        self.server, self.ui, self.provider = server, ui, provider

    def get(self, path: str) -> Any:
        return httpx.get(self.server.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=30).raise_for_status().json()


def write_secrets(path: Path, provider: OidcProvider) -> Path:
    """Streamlit's [auth] secrets for the local provider, as an operator would write them ({port}: Streamlit
    fills in the dashboards' port)."""
    path.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "{secrets.token_urlsafe(32)}"
expose_tokens = ["id"]

[auth.localid]
label = "Local ID"
client_id = "{provider.client_id}"
client_secret = "{provider.client_secret}"
server_metadata_url = "{provider.metadata_url}"
""")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from tests.otlp_helpers import make_request, make_span

    base = tmp_path_factory.mktemp("oidc-browser")
    provider = OidcProvider(user=ALICE).start()
    server = None
    try:
        server = ServerProcess(base / "srv", env={
            "FLIGHTREC_API_TOKEN": ADMIN_TOKEN, "FLIGHTREC_OIDC_ISSUER": provider.issuer,
            "FLIGHTREC_OIDC_AUDIENCE": provider.client_id, "FLIGHTREC_DETECT_INTERVAL_S": "0"}).start()
        created = httpx.post(f"{server.url}/api/principals", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             json={"name": ALICE.email, "kind": "person", "roles": ["sre"]}, timeout=30)
        assert created.status_code == 201, created.text
        body = make_request([make_span("run", {"gen_ai.agent.name": AGENT})], {"service.name": "svc"})
        assert httpx.post(server.url + "/v1/traces", content=body.SerializeToString(), timeout=30,
                          headers={"content-type": "application/x-protobuf"}).status_code == 200
        server.wait_drained()
        env = {key: value for key, value in os.environ.items() if key != "FLIGHTREC_API_TOKEN"}  # people sign in
        oidc = ["--oidc-secrets", str(write_secrets(base / "secrets.toml", provider))]
        with running_ui(server.url, base / "ui.log", env=env, args=oidc) as url:
            yield Site(server, url, provider)
    finally:
        if server is not None:
            server.stop()
        provider.stop()


@pytest.fixture
def page(site: Site) -> Iterator[Any]:
    """A fresh browser (no cookies) on the dashboards; the provider signs in alice unless a test says otherwise."""
    site.provider.user = ALICE
    with launched_chromium() as browser:
        yield browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()


def shown(text: str) -> re.Pattern[str]:
    """``text`` as the page shows it: the dashboards put an invisible word joiner (U+2060) into what could
    autolink (the ``@`` of an email address, ``://``), so the pattern lets one follow any character."""
    return re.compile("\u2060?".join(re.escape(char) for char in text))


def expect_signed_in(page: Any) -> None:
    from playwright.sync_api import expect

    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text(shown("Signed in as alice@example.com (sre)"))).to_be_visible(timeout=60_000)
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
    expect(page.get_by_placeholder("your name")).to_have_count(0)  # the principal acts, no typed name


def test_sign_in_with_the_provider_act_as_alice_and_sign_out(site: Site, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(site.ui)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
    expect(page.get_by_label("Token")).to_be_visible(timeout=30_000)  # the token field stays beside the provider
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "oidc-sign-in-page.png"))
    before = len(site.provider.issued)
    page.get_by_role("button", name=BUTTON).click()
    expect_signed_in(page)
    assert len(site.provider.issued) == before + 1, "signed in through the provider's token endpoint"
    assert site.provider.issued[-1]["nonce"], "the authorization request's nonce came back in the ID token"
    page.screenshot(path=str(ARTIFACTS / "oidc-alice-signed-in.png"))

    # she acts: the kill switch, as alice@example.com (the API's principal, from her ID token)
    page.goto(f"{site.ui}/rollback?agent={AGENT}")
    expect_signed_in(page)
    pause = page.get_by_role("button", name="Pause", exact=True)
    expect(pause).to_be_enabled(timeout=60_000)
    page.get_by_placeholder("why (recorded in the audit trail)").fill("signed in with Local ID")
    pause.click()
    expect(page.get_by_text(shown(f"{AGENT} is now paused (set by alice@example.com)"))).to_be_visible(timeout=60_000)
    control = site.get(f"/api/controls/agents/{AGENT}")
    assert (control["state"], control["actor"]) == ("paused", "alice@example.com"), control
    acts = [(entry["actor"], entry["act"]) for entry in site.get("/api/audit")["items"]
            if entry["subject"] == f"agent:{AGENT}"]
    assert ("alice@example.com", "pause") in acts, acts

    # sign out: Streamlit forgets the identity cookie; the next visit asks again
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Signed in as")).to_have_count(0)
    page.goto(f"{site.ui}/triage")
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Signed in as")).to_have_count(0)


def test_an_expired_id_token_asks_to_sign_in_again(site: Site, page: Any) -> None:
    """Authlib accepts an ID token up to 120 s past its exp at the callback; the API (30 s leeway) does not,
    so the page says it expired and offers the provider again; a fresh sign-in gets a fresh token."""
    from playwright.sync_api import expect

    site.provider.user = User(ALICE.email, ALICE.name, exp_in=-60)
    page.goto(site.ui)
    page.get_by_role("button", name=BUTTON).click()
    expect(page.get_by_text("the ID token has expired").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text(shown("Signed in at your identity provider as alice@example.com")).first).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_have_count(0)
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "oidc-alice-expired.png"))
    site.provider.user = ALICE
    page.get_by_role("button", name=BUTTON).click()
    expect_signed_in(page)


def test_a_person_no_admin_created_is_told_how_to_get_in(site: Site, page: Any) -> None:
    from playwright.sync_api import expect

    site.provider.user = User("erin@example.com", "Erin")
    page.goto(site.ui)
    page.get_by_role("button", name=BUTTON).click()
    expect(page.get_by_text(shown("no principal named erin@example.com: an admin creates it with flightrec "
                                  "tokens create --name erin@example.com --role ROLE")).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Signed in as")).to_have_count(0)
    switch = page.get_by_role("button", name="Sign out of the identity provider")
    expect(switch).to_be_visible()
    switch.click()
    expect(page.get_by_text(shown("no principal named erin@example.com"))).to_have_count(0, timeout=60_000)
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible(timeout=60_000)
