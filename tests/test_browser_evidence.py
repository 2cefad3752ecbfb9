"""The Evidence page (issue 11): a compliance officer picks "invoices touched by finance-agent" in a window,
previews what goes in, exports, downloads; the bundle then verifies on the same page, and a bundle with one
byte changed is named as broken. Through Streamlit's AppTest and in a real headless Chromium, against a
real server holding tests/bundle_world.py's traces."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import ARTIFACTS, CHROMIUM, launched_chromium, running_ui
from tests.bundle_world import SERVER_ENV, SINCE, UNTIL, members, send_world, token_for, zipped
from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow
IN_SCOPE_SPANS = 6  # traces A and B: 3 spans each (tests/bundle_world.py)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = ServerProcess(tmp_path_factory.mktemp("evidence-page") / "srv", env=SERVER_ENV).start()
    try:
        send_world(server)
        yield {"server": server, "compliance": token_for(server, "compliance"), "viewer": token_for(server, "viewer")}
    finally:
        server.stop()


def evidence_page(monkeypatch: pytest.MonkeyPatch, server: ServerProcess, token: str) -> Any:
    from streamlit.testing.v1 import AppTest

    from flightrec.dashboards.launch import APP
    from flightrec.dashboards.ui import EVIDENCE_PAGE

    monkeypatch.setenv("FLIGHTREC_API_URL", server.url)
    monkeypatch.setenv("FLIGHTREC_API_TOKEN", token)
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    at.switch_page(EVIDENCE_PAGE)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def texts(elements: Any) -> list[str]:
    from flightrec.dashboards.safe_text import plain_text

    return [plain_text(element.value) for element in elements]


def test_the_page_previews_and_exports_the_acceptance_scope(monkeypatch: pytest.MonkeyPatch, world) -> None:
    at = evidence_page(monkeypatch, world["server"], world["compliance"])
    assert texts(at.title) == ["Evidence"]
    boxes = {box.label: box for box in at.selectbox}
    assert "invoice" in boxes["Object type"].options and "finance-agent" in boxes["Agent"].options
    boxes["Object type"].set_value("invoice")
    boxes["Agent"].set_value("finance-agent")
    boxes["Period"].set_value("Custom range")
    dates = {field.label: field for field in at.date_input}
    dates["From (custom range)"].set_value(date.fromisoformat(SINCE))
    dates["Until, excluded (custom range)"].set_value(date.fromisoformat(UNTIL))
    at.button[0].click().run()  # the form's Preview
    assert not at.exception, [error.value for error in at.exception]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Spans"] == str(IN_SCOPE_SPANS) and metrics["Traces"] == "2" and metrics["Objects"] == "2", metrics
    assert any("every invoice touched by finance-agent" in text and SINCE in text for text in texts(at.markdown))
    [export] = [button for button in at.button if button.label == "Export bundle"]
    export.click().run()
    assert not at.exception, [error.value for error in at.exception]
    ready = [text for text in texts(at.success) if "is ready" in text]
    assert ready and "the export is in the audit log" in ready[0], texts(at.success)


def test_a_bad_scope_is_explained_and_exports_nothing(monkeypatch: pytest.MonkeyPatch, world) -> None:
    at = evidence_page(monkeypatch, world["server"], world["compliance"])
    {box.label: box for box in at.selectbox}["Period"].set_value("Custom range")
    dates = {field.label: field for field in at.date_input}
    dates["From (custom range)"].set_value(date.fromisoformat(UNTIL))
    dates["Until, excluded (custom range)"].set_value(date.fromisoformat(SINCE))
    at.button[0].click().run()
    assert any("must be before until" in text for text in texts(at.error)), texts(at.error)
    assert not [button for button in at.button if button.label == "Export bundle"]


def test_a_viewer_is_told_exporting_needs_compliance(monkeypatch: pytest.MonkeyPatch, world) -> None:
    at = evidence_page(monkeypatch, world["server"], world["viewer"])
    assert any("Exporting needs the compliance role" in text for text in texts(at.info)), texts(at.info)
    assert not at.selectbox and not [button for button in at.button if button.label == "Preview"]


def pick(page: Any, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit selectbox labelled ``label``."""
    from playwright.sync_api import expect

    page.get_by_role("combobox", name=label).click()
    choice = page.get_by_role("option", name=option, exact=True)
    expect(choice).to_be_visible(timeout=30_000)
    choice.click()


def upload(page: Any, path: Path) -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))


def test_compliance_exports_downloads_and_verifies_in_a_real_browser(world, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    env = {key: value for key, value in os.environ.items() if key != "FLIGHTREC_API_TOKEN"}
    with running_ui(world["server"].url, tmp_path / "ui.log", env=env) as ui, launched_chromium() as browser:
        page = browser.new_page(accept_downloads=True)
        try:
            page.goto(f"{ui}/evidence")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
            page.get_by_label("Token").fill(world["compliance"])
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Evidence")).to_be_visible(timeout=60_000)
            pick(page, "Object type", "invoice")
            pick(page, "Agent", "finance-agent")
            page.get_by_role("button", name="Preview").click()
            expect(page.get_by_text("every invoice touched by finance-agent, any time")).to_be_visible(timeout=60_000)
            page.get_by_role("button", name="Export bundle").click()
            download_button = page.get_by_role("button", name="Download bundle")
            expect(download_button).to_be_visible(timeout=120_000)
            with page.expect_download(timeout=60_000) as started:
                download_button.click()
            bundle = tmp_path / started.value.suggested_filename
            started.value.save_as(bundle)
            assert bundle.name.startswith("flightrec-evidence-") and zipfile.is_zipfile(bundle)
            files = members(bundle.read_bytes())
            spans = [line for line in files["spans.jsonl"].splitlines() if line]
            assert len(spans) == 9, len(spans)  # A, B and D (40 days ago): any time

            upload(page, bundle)
            expect(page.get_by_text("Intact: bundle")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("What it does not prove")).to_be_visible()

            broken = tmp_path / "broken.zip"
            files["spans.jsonl"] = files["spans.jsonl"].replace(b"INV-1001", b"INV-1009", 1)
            broken.write_bytes(zipped(files))
            upload(page, broken)
            expect(page.get_by_text("BROKEN:")).to_be_visible(timeout=60_000)
            expect(page.get_by_role("cell", name="spans.jsonl").first).to_be_visible()
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "evidence-page.png"), full_page=True)
            raise
        finally:
            page.close()

