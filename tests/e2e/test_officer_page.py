"""The loan officer's page in headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support import KEY, Service

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "Chromium not installed (Debian package 'chromium')"
        if IN_CI:
            pytest.fail(message + "; CI must run the browser test")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


def test_officer_scores_an_application(browser, served_home):
    settings, _ = served_home
    service = Service(settings.home)
    console_errors: list[str] = []
    try:
        page = browser.new_page()
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{service.url}/")
        assert "loan_default_model v" in page.inner_text("header")
        page.fill("#api_key", KEY)
        page.fill("#loan_amnt", "30000")
        page.fill("#annual_inc", "24000")
        page.select_option("#home_ownership", "RENT")
        page.fill("#fico_range_low", "662")
        page.fill("#fico_range_high", "666")
        page.fill("#dti", "38.5")
        page.click("#score")
        page.wait_for_selector("#result")
        pd_text = page.inner_text("#pd")
        assert pd_text.endswith("%") and 0 < float(pd_text.rstrip("%")) < 100
        assert page.inner_text("#decision") in {"approve", "decline"}
        assert page.inner_text("#grade") in list("ABCDEFG")
        reasons = page.locator("#reasons li").all_inner_texts()
        assert reasons and len(reasons) <= 4 and all(r.strip() for r in reasons)
        assert all(r.rstrip().endswith(")") and "(+" in r for r in reasons)  # with its weight
        rule = page.inner_text("#rule")  # the cut-off and what the grade means
        assert "cut-off of" in rule and "%" in rule and "master scale" in rule
        assert page.inner_text("#decision") == "decline" and "Declined" in rule
        recourse = page.inner_text("#recourse")  # what would change the answer, if anything
        assert recourse.startswith(("Would be approved with", "No change in the requested"))
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "officer_page.png"), full_page=True)

        page.fill("#api_key", KEY)
        page.fill("#loan_amnt", "-3")
        page.click("#score")
        assert "below the minimum 1" in page.inner_text("#errors")

        page.goto(f"{service.url}/predictions")
        rows = page.locator("#predictions tr").count()
        assert (
            rows >= 2 and "approve" in page.inner_text("#predictions")
        ) or "decline" in page.inner_text("#predictions")
        page.screenshot(path=str(SCREENSHOTS / "recent_predictions.png"), full_page=True)
    finally:
        service.stop()
    assert not console_errors, console_errors


def test_api_docs_work_with_every_other_host_blocked(browser, served_home):
    """/docs must render from the service alone: behind a bank's proxy or offline, a CDN
    is not there. Every request to another host is aborted and recorded."""
    settings, _ = served_home
    service = Service(settings.home)
    elsewhere: list[str] = []
    try:
        context = browser.new_context()

        def guard(route) -> None:  # type: ignore[no-untyped-def]
            if route.request.url.startswith(service.url):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.goto(f"{service.url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/predict" in paths and "/v1/outcomes" in paths and "/invocations" in paths
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "api_docs_offline.png"), full_page=True)
        page.goto(f"{service.url}/redoc")
        page.wait_for_selector("text=Score one application", state="attached", timeout=30_000)
        context.close()
    finally:
        service.stop()
    assert not elsewhere, elsewhere
