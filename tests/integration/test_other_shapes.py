"""Files of other lenders' shapes: a numeric 0/1 target, tab-separated, a byte-order mark."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.test_cli import run

pytestmark = pytest.mark.integration

PROFILE = {
    "name": "tabbank",
    "id": {"column": "app_id"},
    "target": {"column": "defaulted", "bad": [1], "good": [0]},  # numbers, unquoted
    "columns": {
        "app_id": {"parser": "text", "role": "id"},
        "amount": {"parser": "number", "required": True, "min": 0},
        "income": {"parser": "number"},
        "defaulted": {"parser": "text", "role": "target", "required": True},
    },
}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    profile = tmp_path / "tabbank.yaml"
    profile.write_text(yaml.safe_dump(PROFILE))
    rows = ["app_id\tamount\tincome\tdefaulted"] + [
        f"A{i}\t{1000 + i}\t{30000 + 7 * i}\t{1 if i % 4 == 0 else 0}" for i in range(40)
    ]
    data = tmp_path / "apps.tsv.csv"
    data.write_bytes(b"\xef\xbb\xbf" + ("\n".join(rows) + "\n").encode())  # BOM first
    return profile, data


@pytest.mark.parametrize("delimiter", ["\\t", "tab", "\t"])
def test_tab_separated_file_with_bom_and_numeric_target(tmp_path: Path, delimiter):
    profile, data = _files(tmp_path)
    home = tmp_path / "home"
    result = run(
        "--profile",
        str(profile),
        "ingest",
        str(data),
        "--delimiter",
        delimiter,
        "--json",
        home=home,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    import json

    batch = json.loads(result.stdout)["batches"][0]
    assert batch["rows_silver_new"] == 40 and batch["rows_rejected"] == 0
    assert batch["columns_ignored"] == []  # the BOM did not hide 'app_id'
    status = json.loads(run("--profile", str(profile), "status", "--json", home=home).stdout)
    assert status["tables"]["gold_loan_features"] == 40


def test_a_delimiter_of_several_characters_is_one_clear_error(tmp_path: Path):
    profile, data = _files(tmp_path)
    result = run(
        "--profile", str(profile), "ingest", str(data), "--delimiter", "::", home=tmp_path / "h"
    )
    assert result.returncode == 1
    assert "not one character" in result.stderr and "Traceback" not in result.stderr
