"""The dashboards load in a real browser with every outside host unreachable: nothing is fetched from one."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.test_browser import CHROMIUM_ARGS, DIRECT_URLS, chromium, ui  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def test_every_page_loads_without_an_outside_host(chromium, server, ui) -> None:  # noqa: F811
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})

            def only_loopback(route) -> None:
                url = route.request.url
                if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    outside.append(url)
                    route.abort()

            page.route("**/*", only_loopback)
            for path, heading in DIRECT_URLS:
                page.goto(f"{ui}{path}")
                expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=60_000)
            favicon = page.locator("link[rel='shortcut icon'], link[rel='icon']").first.get_attribute("href")
            assert favicon and urlparse(favicon).hostname in (None, "127.0.0.1", "localhost"), favicon
        finally:
            browser.close()
    assert outside == [], f"the dashboards reached outside hosts: {sorted(set(outside))}"
