"""Property-based tests of the live service against its own OpenAPI document (schemathesis,
pinned in the lock): every operation, no 5xx, every answer within the documented status
codes, content types, headers and schemas; invalid input refused; auth not ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import KEY, Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def test_the_live_api_meets_its_schema(served_home, tmp_path):
    settings, _ = served_home
    service = Service(settings.home)
    try:
        service.wait_ready()
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{service.url}/openapi.json",
                "--header",
                f"X-API-Key: {KEY}",
                "--checks",
                "all",
                # positive_data_acceptance expects every schema-valid value to be accepted;
                # the profile's parsers refuse values JSON Schema cannot express ("abc" as
                # a loan amount, an unknown id) with a 422 naming them, as they should.
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "80",
                "--seed",
                "20261130",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=900,
        )
        metrics = httpx.get(f"{service.url}/metrics").text
        ready = httpx.get(f"{service.url}/ready")
    finally:
        service.stop()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "10 selected / 10 total" in result.stdout  # every operation
    assert 'status="500"' not in metrics
    assert ready.status_code == 200, ready.text  # the log survived it all
