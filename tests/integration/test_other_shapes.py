"""Files of other lenders' shapes: a numeric 0/1 target, tab-separated, a byte-order mark,
percent units, sentinel codes, impossible values, no loan id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
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


BUREAU = {
    "name": "bureau",
    # No id column: ids are derived from the application's fields.
    "target": {"column": "bad_flag", "bad": [1], "good": [0]},
    "columns": {
        "amount": {"parser": "number", "required": True, "min": 100, "max": 100000},
        "rate": {"parser": "percent", "min": 0, "max": 1, "monotone": "increasing"},
        "delinq": {"parser": "integer", "min": 0, "max": 50},
        "age": {"parser": "integer", "min": 18, "max": 100},
        "region": {"parser": "category", "categories": ["N", "S", "E", "W"]},
        "bureau_score": {"parser": "number"},
        "paid_total": {"parser": "number", "role": "leakage"},
        "bad_flag": {"parser": "text", "role": "target", "required": True},
    },
}
# What the file really holds, said in the profile: rates in percent units, 96 and 98
# meaning "unknown" in the delinquency count, impossible ages set missing.
FITTED = {
    "rate": {"unit": "percent"},
    "delinq": {"missing": [96, 98]},
    "age": {"out_of_range": "missing"},
}


def _bureau_rows(n: int = 1200) -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        rate = rng.uniform(5, 30)
        delinq = int(rng.poisson(0.7))
        bad = rng.random() < 1 / (1 + np.exp(-(-4.5 + 0.12 * rate + 0.5 * delinq)))
        rows.append(
            {
                "amount": str(int(rng.integers(10, 400)) * 100),
                "rate": f"{rate:.2f}",
                "delinq": ["96", "98"][i % 2] if i % 10 == 3 else str(delinq),
                "age": "144" if i % 50 == 7 else str(int(rng.integers(21, 70))),
                "region": "NSEW"[i % 4],
                "bureau_score": "",
                "paid_total": str(int(rng.integers(0, 5000))),
                "bad_flag": str(int(bad)),
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    lines = [",".join(columns)] + [",".join(row[c] for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_profile_fitted_to_another_lenders_file(tmp_path: Path):
    """Percent units, sentinel codes and impossible values: a profile that does not fit
    is refused with the reasons; the fitted one loads, the home remembers it, and the same
    applications scored without outcome columns join back to the warehouse by id."""
    rows = _bureau_rows()
    data = _write_csv(tmp_path / "bureau.csv", rows, list(rows[0]))
    home = tmp_path / "home"
    naive = tmp_path / "naive.yaml"
    naive.write_text(yaml.safe_dump(BUREAU))
    fitted = tmp_path / "fitted.yaml"
    columns = {k: {**v, **FITTED.get(k, {})} for k, v in BUREAU["columns"].items()}
    fitted.write_text(yaml.safe_dump({**BUREAU, "columns": columns}))

    shown = run("profiles", "show", str(fitted), home=home)
    assert shown.returncode == 0, shown.stderr
    for said in ("percent (in %)", "0..50; missing: 96, 98", "18..100 (outside: missing)"):
        assert said in shown.stdout, shown.stdout

    refused = run("--profile", str(naive), "ingest", str(data), home=home)
    assert refused.returncode == 1, refused.stderr
    message = " ".join(refused.stderr.split())
    assert "above ingest.max_reject_share" in message and "nothing from this file" in message
    assert "rate: is above the maximum 1" in message and "unit: percent" in message
    assert "Traceback" not in refused.stderr

    loaded = run("--profile", str(fitted), "ingest", str(data), "--json", home=home)
    assert loaded.returncode == 0, loaded.stderr
    batch = json.loads(loaded.stdout)["batches"][0]
    assert batch["rows_bronze"] == len(rows) and batch["rows_rejected"] == 0
    assert batch["empty_features"] == ["bureau_score"]
    assert any("empty in every row: bureau_score" in w for w in batch["warnings"])

    # Later commands need no --profile: the warehouse remembers the one given.
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    with engine.connect() as conn:
        silver = pd.read_sql("SELECT * FROM silver_loans", conn)
    assert silver["delinq"].isna().sum() == sum(r["delinq"] in ("96", "98") for r in rows)
    assert silver["age"].isna().sum() == sum(r["age"] == "144" for r in rows)
    assert silver["rate"].max() < 0.31 and silver["rate"].min() > 0.04
    trained = run(
        "train", "--trials", "0", "--candidates", "logistic_regression", "--json", home=home
    )
    assert trained.returncode == 0, trained.stderr
    promoted = run("promote", "--force", "--reason", "shape test", "--json", home=home)
    assert promoted.returncode == 0, promoted.stderr

    # The applications as they arrive: no outcome columns, another column order, and one
    # with a region the profile does not know (refused as the API refuses it).
    applications = [*rows[:300], {**rows[0], "region": "Q", "amount": "777"}]
    order = ["region", "age", "rate", "bureau_score", "amount", "delinq"]
    scored = run(
        "score",
        str(_write_csv(tmp_path / "apps.csv", applications, order)),
        "--output",
        str(tmp_path / "scores"),
        "--json",
        home=home,
    )
    assert scored.returncode == 0, scored.stderr
    (output,) = (tmp_path / "scores").glob("*.parquet")
    answers = pd.read_parquet(output)
    assert answers["error"].iloc[-1] == "region: 'Q' is not one of N, S, E, W"
    answered = answers.iloc[:-1]
    assert answered["error"].isna().all()
    assert set(answered["loan_id"]) <= set(silver["loan_id"])  # joined back by id
    assert answered["loan_id"].nunique() == 300


def test_trailing_tabs_and_shifted_rows(tmp_path: Path):
    """Every line ends in a tab (an empty last column); two rows are shifted (a field too
    many, a field too few): they are rejected with the reason, every other row loads,
    and each row keeps its own row number."""
    profile, _ = _files(tmp_path)
    lines = ["app_id\tamount\tincome\tdefaulted\t"]
    for i in range(40):
        fields = [f"A{i}", str(1000 + i), str(30000 + 7 * i), str(int(i % 4 == 0))]
        if i == 10:
            fields.insert(1, "Main St")  # a field too many
        if i == 20:
            fields.pop(2)  # a field too few
        lines.append("\t".join(fields) + "\t")
    data = tmp_path / "shifted.tsv"
    data.write_text("\n".join(lines) + "\n")
    home = tmp_path / "home"
    result = run(
        "--profile", str(profile), "ingest", str(data), "--delimiter", "tab", "--json", home=home
    )
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)["batches"][0]
    assert batch["rows_bronze"] == 40 and batch["rows_rejected"] == 2
    assert batch["rows_silver_new"] == 38
    assert [(r["column"], r["rows"]) for r in batch["top_reasons"]] == [("(row)", 1)] * 2
    assert all(r["problem"].startswith("the row has") for r in batch["top_reasons"])
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    with engine.connect() as conn:
        rejects = pd.read_sql("SELECT source_row, column_name, reason FROM silver_rejects", conn)
        silver = pd.read_sql("SELECT loan_id, source_row FROM silver_loans", conn)
    assert sorted(rejects["source_row"]) == [11, 21]
    assert set(rejects["column_name"]) == {"(row)"}
    assert "the row has 6 fields, the header 5" in rejects["reason"].iloc[0]
    rows = dict(zip(silver["loan_id"], silver["source_row"], strict=True))
    assert rows["A39"] == 40 and rows["A12"] == 13  # numbered as in the file
