"""The monitoring report and the history page in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from loanrisk.config import get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from tests import steps
from tests.e2e.test_officer_page import SCREENSHOTS, browser  # noqa: F401 (fixture)
from tests.support import KEY, Service

pytestmark = pytest.mark.e2e


def test_monitoring_report_and_history_page(browser, served_home, tmp_path):  # noqa: F811
    """The report a risk manager reads (header, verdict, PSI table, charts, PD by grade,
    Evidently's detail) opens without console errors; the service's history page draws
    each run's figures over time."""
    import shutil

    settings, _ = served_home
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    copy = get_settings(home=home)
    applications = tmp_path / "applications.csv"
    write_generated(
        GeneratorConfig(rows=3_000, start="2015-02", months=1, seed=12, drift=1.0), applications
    )
    steps.score(copy, str(applications))
    steps.monitor(copy, days=1)
    result = steps.monitor(copy, days=1)  # a second run: the history has two points
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(result.report_html).as_uri())
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    header = page.inner_text("#header")
    assert result.monitoring_run_id in header and "applications in the window" in header
    assert page.inner_text("#verdict").startswith(("Retraining recommended", "No action"))
    psi_rows = page.locator("#psi tr").count()
    assert psi_rows == 1 + len(result.psi) - 1  # a header, then every input (not the score)
    assert page.locator("svg.chart").count() == 2  # PD by grade and the PD histogram
    assert page.locator("#grades tr").count() >= 2
    frame = page.frame_locator("iframe")
    assert "drift" in frame.locator("body").inner_text(timeout=30_000).lower()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "monitoring_report.png"), full_page=True)
    assert not errors, errors[:5]

    service = Service(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{service.url}/")
        page.fill("#api_key", KEY)  # the page keeps the key in a cookie once it is used
        page.click("#score")
        page.wait_for_selector("#result")
        page.goto(f"{service.url}/monitoring")
        assert page.locator("#runs tr").count() == 3  # a header and two runs
        assert page.locator("#charts svg.chart").count() == 3
        assert page.locator("#charts svg.chart polyline").count() >= 2  # PSI and drift lines
        page.screenshot(path=str(SCREENSHOTS / "monitoring_history.png"), full_page=True)
        page.click("#runs a >> nth=0")
        page.wait_for_selector("#psi")
        assert page.locator("#psi tr").count() == psi_rows
    finally:
        service.stop()
    assert not errors, errors[:5]
