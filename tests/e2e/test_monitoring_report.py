"""The monitoring HTML report opens in headless Chromium without console errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from loanrisk.config import get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from tests import steps
from tests.e2e.test_officer_page import SCREENSHOTS, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def test_drift_report_renders(browser, served_home, tmp_path):  # noqa: F811
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
    result = steps.monitor(copy, days=1)
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(result.report_html).as_uri())
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    text = page.inner_text("body")
    assert "Drift" in text or "drift" in text
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "drift_report.png"), full_page=False)
    assert not errors, errors[:5]
