"""Who did what, proven (issue 10), in a real browser (headless Chromium): against a server that asks
for a token, two people sign in to the dashboards in two browser sessions. Alice (sre) builds a
high-risk undo plan in the rollback console and is refused when she approves it herself; Bob
(approver) opens her share link, signs in and approves it. The API records alice as the author and
bob as the approver: the principals, not typed names. A wrong token is refused at sign-in, and once
bob's token is revoked his next act is refused too."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser_support import ARTIFACTS, CHROMIUM, launched_chromium, running_ui
from tests.conftest import ServerProcess
from tests.test_records import RecordsServer
from tests.test_rollback import Rig, record_high_risk_refund

pytestmark = pytest.mark.slow
ADMIN_TOKEN = "browser-signin-admin-token-0123456789"
AGENT = "refund-bot-signin"
REFUSED = "refused the token"  # the dashboards' words for a 401 (dashboards/api.py _explain)


class Site:
    def __init__(self, server: ServerProcess, ui: str, tokens: dict[str, str]) -> None:
        self.server, self.ui, self.tokens = server, ui, tokens

    def call(self, method: str, path: str, token: str = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.server.url + path, headers={"Authorization": f"Bearer {token}"},
                             timeout=30, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params).raise_for_status().json()


def create_token(server: ServerProcess, name: str, *roles: str) -> str:
    """A person principal, created by the bootstrap admin (POST /api/principals); its token."""
    created = httpx.post(f"{server.url}/api/principals", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         json={"name": name, "kind": "person", "roles": list(roles)}, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["token"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A token-protected server whose undo reaches a records service, one high-risk refund recorded
    (refund.issue of 420 EUR: high risk by the operator's policy), alice and bob, and the dashboards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    base = tmp_path_factory.mktemp("signin")
    records = RecordsServer(base / "records.db").start()
    server = None
    try:
        server = ServerProcess(base / "srv", env={
            "FLIGHTREC_API_TOKEN": ADMIN_TOKEN, "FLIGHTREC_RECORDS_URL": records.url,
            "FLIGHTREC_DETECT_INTERVAL_S": "0"}).start()
        rig = Rig(server, records)
        try:
            record_high_risk_refund(rig, AGENT)
        finally:
            rig.close()
        tokens = {"alice": create_token(server, "alice", "sre"), "bob": create_token(server, "bob", "approver")}
        ui_env = {key: value for key, value in os.environ.items() if key != "FLIGHTREC_API_TOKEN"}  # people sign in
        with running_ui(server.url, base / "ui.log", env=ui_env) as url:
            yield Site(server, url, tokens)
    finally:
        if server is not None:
            server.stop()
        records.stop()


@pytest.fixture
def browser(site: Site) -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


def sign_in(page: Any, token: str) -> None:
    """The sign-in gate: the "Sign in" page, a token field (a password field), the Sign in button."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
    field = page.get_by_label("Token")
    field.fill(token)
    page.get_by_role("button", name="Sign in").click()


def expect_signed_in(page: Any, name: str, roles: str) -> None:
    from playwright.sync_api import expect

    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text(f"Signed in as {name} ({roles})")).to_be_visible(timeout=60_000)
    expect(page.get_by_placeholder("your name")).to_have_count(0)  # the principal acts, no typed name
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


def test_a_wrong_token_is_refused_with_a_clear_message(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    try:
        page.goto(f"{site.ui}/rollback?agent={AGENT}")
        sign_in(page, "frt_this-is-not-anyones-token-0123")
        expect(page.get_by_text(REFUSED).first).to_be_visible(timeout=30_000)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # still asked, nothing shown
        expect(page.get_by_text("Signed in as")).to_have_count(0)
        expect(page.get_by_role("heading", name="Rollback console")).to_have_count(0)
    finally:
        page.context.close()


def test_two_people_sign_in_the_second_approves_the_firsts_plan_and_a_revoked_token_is_refused(
        site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    # --- alice, in her own browser session: she builds the plan and may not approve it -------------
    alice = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
    bob = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
    try:
        alice.goto(f"{site.ui}/rollback?agent={AGENT}")
        sign_in(alice, site.tokens["alice"])
        expect_signed_in(alice, "alice", "sre")
        expect(alice.get_by_role("heading", name="Rollback console")).to_be_visible(timeout=60_000)
        expect(alice.locator("table").filter(has_text="refund.issue")).to_be_visible(timeout=30_000)
        build = alice.get_by_role("button", name="Build the plan (dry run)")
        expect(build).to_be_enabled(timeout=30_000)
        build.click()
        heading = alice.get_by_role("heading", name=re.compile(r"^Plan [0-9a-f]{12}$"))
        expect(heading).to_be_visible(timeout=60_000)
        plan_id = heading.inner_text().split()[-1]
        plan = site.get(f"/api/rollback/plans/{plan_id}")
        assert plan["author"] == "alice", plan["author"]  # the principal behind the token, not a typed name
        assert plan["requires_approval"] and plan["status"] == "awaiting_approval"
        assert [(step["action"], step["risk"], step["status"]) for step in plan["steps"]] == [
            ("refund.issue", "high", "reversible")]
        expect(alice.get_by_text("built by alice").first).to_be_visible()
        needs = alice.get_by_text("Needs a second person.").locator("xpath=ancestor::*[@data-testid='stAlert'][1]")
        expect(needs).to_contain_text("someone other than alice must approve it")
        share = re.search(r"https?://\S+/\?plan=" + plan_id, needs.inner_text())
        assert share, needs.inner_text()

        expect(needs).to_contain_text("they sign in with their own token and press Approve")  # no "You are" box
        own = alice.get_by_role("button", name="Approve as alice")  # offered; the API refuses it, the page says so
        expect(own).to_be_enabled(timeout=30_000)
        own.click()
        expect(alice.get_by_text("alice wrote this plan and cannot approve it: a second person must")
               ).to_be_visible(timeout=30_000)
        refused = site.call("POST", f"/api/rollback/plans/{plan_id}/approve", site.tokens["alice"],
                            json={"actor": "bob"})  # nor can she approve under another's name
        assert refused.status_code == 403 and "alice wrote this plan" in refused.json()["detail"], refused.text
        plan = site.get(f"/api/rollback/plans/{plan_id}")
        assert plan["status"] == "awaiting_approval" and plan["approvals"] == []
        ARTIFACTS.mkdir(exist_ok=True)
        alice.screenshot(path=str(ARTIFACTS / "signin-alice-refused.png"))

        # --- bob, in another browser session: the share link, sign in, approve ---------------------
        bob.goto(share.group(0))
        sign_in(bob, site.tokens["bob"])
        expect_signed_in(bob, "bob", "approver")
        expect(bob.get_by_role("heading", name=f"Plan {plan_id}")).to_be_visible(timeout=60_000)
        assert f"plan={plan_id}" in bob.url
        expect(bob.get_by_text("built by alice").first).to_be_visible()
        approve = bob.get_by_role("button", name="Approve as bob")
        expect(approve).to_be_enabled(timeout=30_000)
        approve.click()
        expect(bob.get_by_text("Approved by bob").first).to_be_visible(timeout=30_000)
        plan = site.get(f"/api/rollback/plans/{plan_id}")
        assert [item["actor"] for item in plan["approvals"]] == ["bob"] and plan["status"] == "ready"
        acts = [(entry["act"], entry["actor"]) for entry in site.get("/api/audit")["items"]
                if entry["subject"] == f"plan:{plan_id}"]
        assert acts == [("rollback.plan", "alice"), ("rollback.approve", "bob")], acts
        expect(bob.get_by_text("approved by bob").first).to_be_visible(timeout=30_000)
        bob.screenshot(path=str(ARTIFACTS / "signin-bob-approved.png"))

        # --- bob's token is revoked: his next act is refused, and so is signing in with it again ----
        assert site.call("DELETE", "/api/principals/bob").json()["revoked"] is True
        before = site.get(f"/api/controls/agents/{AGENT}")
        pause = bob.get_by_role("button", name="Pause", exact=True)
        expect(pause).to_be_enabled(timeout=30_000)
        pause.click()  # his next act: refused, and the page asks him to sign in again
        expect(bob.get_by_role("heading", name="Sign in")).to_be_visible(timeout=30_000)
        expect(bob.get_by_text(REFUSED).first).to_be_visible()
        expect(bob.get_by_text("Signed in as")).to_have_count(0)
        expect(bob.get_by_text(f"{AGENT} is now paused")).to_have_count(0)
        bob.screenshot(path=str(ARTIFACTS / "signin-bob-revoked.png"))
        assert site.get(f"/api/controls/agents/{AGENT}") == before  # nothing changed
        for method, path in (("POST", f"/api/rollback/plans/{plan_id}/approve"), ("GET", "/api/stats")):
            assert site.call(method, path, site.tokens["bob"], json={}).status_code == 401, path
        assert [entry["act"] for entry in site.get("/api/audit")["items"] if entry["actor"] == "bob"] == [
            "rollback.approve"], "nothing acted as bob after the revocation"
        bob.reload()
        sign_in(bob, site.tokens["bob"])
        expect(bob.get_by_text(REFUSED).first).to_be_visible(timeout=30_000)
        expect(bob.get_by_text("Signed in as")).to_have_count(0)

        # alice, still signed in, is unaffected
        alice.reload()
        sign_in(alice, site.tokens["alice"])
        expect_signed_in(alice, "alice", "sre")
    finally:
        alice.context.close()
        bob.context.close()
