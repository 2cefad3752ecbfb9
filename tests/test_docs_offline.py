"""``/docs`` renders in a real browser with every outside host unreachable."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import sync_playwright

from tests.test_browser import CHROMIUM_ARGS, chromium  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def test_api_docs_render_offline(server, chromium) -> None:  # noqa: F811
    path, rendered = "/docs", ".opblock"
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def only_loopback(route) -> None:
                host = urlparse(route.request.url).hostname
                if host in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_loopback)
            page.goto(f"{server.url}{path}", wait_until="load")
            page.wait_for_selector(rendered, timeout=60_000)
            assert page.locator(rendered).count() > 5
            page.locator(rendered).first.click()  # an operation expands: the UI is live, not a blank page
            page.wait_for_selector(".opblock-body", timeout=30_000)
            assert "Flight Recorder" in page.title()
        finally:
            browser.close()
    assert outside == [], f"{path} reached outside hosts: {outside}"
