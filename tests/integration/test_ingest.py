"""Ingestion against real SQLite and PostgreSQL warehouses."""

from __future__ import annotations

import gzip
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from loanrisk.config import Settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.errors import InputFileError, RejectedFileError, WarehouseError
from loanrisk.warehouse.engine import Warehouse, make_engine, migrate
from tests import steps

pytestmark = pytest.mark.integration


def counts(settings: Settings) -> dict[str, int]:
    return steps.status(settings).tables


def test_ingest_twice_adds_nothing_and_counts_reconcile(warehouse_settings, generated):
    results, status = steps.ingest(warehouse_settings, [str(generated)])
    first = results[0]
    assert not first.skipped and first.rows_bronze == 20_000
    assert first.rows_rejected > 0 and first.rows_silver_updated == 0
    assert first.rows_silver_new + first.rows_rejected == first.rows_bronze
    assert status.reconciled, status.problems
    assert status.tables["gold_loan_features"] == first.rows_silver_new

    again, status_again = steps.ingest(warehouse_settings, [str(generated)])
    assert again[0].skipped and again[0].rows_bronze == 0
    assert "already ingested as batch" in again[0].note
    assert status_again.tables == status.tables


def test_gold_is_labelled_over_the_performance_window(warehouse_settings, tmp_path):
    """24-month window, extract 2019-06: vintages up to 2017-06 are labelled (bad if the
    default, dated 5 months after the last payment, came within 24 months of issue; good
    otherwise, Current included); younger vintages are censored, Charged Off included."""
    loans = tmp_path / "loans.csv"
    write_generated(
        GeneratorConfig(rows=8_000, start="2016-01", months=24, seed=7, as_of="2019-06"), loans
    )
    steps.ingest(warehouse_settings, [str(loans)])
    warehouse = Warehouse.open(warehouse_settings)
    with warehouse.engine.connect() as conn:
        silver = pd.read_sql("SELECT target_raw, label, vintage FROM silver_loans", conn)
        gold = pd.read_sql("SELECT * FROM gold_loan_features", conn)
    warehouse.engine.dispose()
    raw = pd.read_csv(loans, dtype=str, keep_default_na=False)
    paid = pd.to_datetime(raw["last_pymnt_d"], format="%b-%Y", errors="coerce")
    issued = pd.to_datetime(raw["issue_d"], format="%b-%Y", errors="coerce")
    months = (paid.dt.year - issued.dt.year) * 12 + (paid.dt.month - issued.dt.month)
    raw["default_at"] = months.fillna(0) + 5
    silver["vintage"] = pd.to_datetime(silver["vintage"])
    matured = silver["vintage"] <= pd.Timestamp("2017-06-01")
    assert silver.loc[~matured, "label"].isna().all()  # censored, whatever the status
    assert silver.loc[matured, "label"].notna().all()
    old = silver[matured]
    assert set(old.loc[old["target_raw"] == "Current", "label"]) == {0}
    assert set(old.loc[old["target_raw"] == "Fully Paid", "label"]) == {0}
    charged = raw[(raw["loan_status"] == "Charged Off") & (issued <= "2017-06-01")]
    expected = (charged["default_at"] <= 24).astype(int)
    observed = old.loc[old["target_raw"] == "Charged Off", "label"].mean()
    assert observed == pytest.approx(expected.mean(), abs=0.01)
    assert 0 < expected.mean() < 1  # some charged off after the window: good within it
    assert 2_000 < gold["label"].notna().sum() < len(gold)
    assert not {"total_pymnt", "recoveries", "last_pymnt_d"} & set(gold.columns)
    assert {"fico_mid", "credit_history_months", "loan_to_income"} <= set(gold.columns)
    assert pd.to_datetime(gold["vintage"]).nunique() == 24


def test_new_file_adds_its_rows_and_a_later_extract_updates(warehouse_settings, tmp_path):
    history = tmp_path / "history.csv"
    newer = tmp_path / "newer.parquet"
    matured = tmp_path / "matured.csv.gz"
    write_generated(GeneratorConfig(rows=3_000, start="2016-01", months=12, seed=1), history)
    write_generated(GeneratorConfig(rows=2_000, start="2017-01", months=3, seed=1), newer)
    write_generated(
        GeneratorConfig(rows=3_000, start="2016-01", months=12, seed=1, as_of="2022-01"), matured
    )
    (first,), _ = steps.ingest(warehouse_settings, [str(history)])
    (second,), status = steps.ingest(warehouse_settings, [str(newer)])
    assert second.rows_bronze == 2_000 and second.rows_silver_updated == 0
    assert status.tables["silver_loans"] == first.rows_silver_new + second.rows_silver_new

    (third,), status = steps.ingest(warehouse_settings, [str(matured)])
    assert third.rows_silver_new == 0
    assert third.rows_silver_updated == first.rows_silver_new
    assert status.reconciled, status.problems
    warehouse = Warehouse.open(warehouse_settings)
    with warehouse.engine.connect() as conn:
        unknown = conn.execute(
            sa.text(
                "SELECT count(*) FROM gold_loan_features WHERE label IS NULL AND batch_id = :b"
            ),
            {"b": third.batch_id},
        ).scalar_one()
    warehouse.engine.dispose()
    assert unknown == 0  # every loan of the matured extract has an outcome


def test_failure_part_way_leaves_no_partial_batch(warehouse_settings, tmp_path):
    good = tmp_path / "good.csv"
    write_generated(GeneratorConfig(rows=3_000, months=6, seed=2), good)
    other = tmp_path / "other.csv"
    write_generated(GeneratorConfig(rows=3_000, months=6, seed=3, dirty_share=0.01), other)
    steps.ingest(warehouse_settings, [str(good)])
    before = counts(warehouse_settings)
    # Every chunk of the second file is written before its reject share is known; the
    # refusal then takes all of them back.
    warehouse_settings.ingest.chunk_size = 500
    warehouse_settings.ingest.max_reject_share = 0.0
    with pytest.raises(RejectedFileError, match="nothing from this file was loaded"):
        steps.ingest(warehouse_settings, [str(other)])
    assert counts(warehouse_settings) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (
            b"name,age\nann,3\n",
            "required column(s) loan_amnt, term, annual_inc, loan_status "
            "missing. Found 2 column(s): 'name', 'age'",
        ),
        (b"loan_amnt;term;annual_inc;loan_status\n5000;36;1;Fully Paid\n", "delimiter ';'"),
        (b"loan_amnt,term,annual_inc,loan_status\n", "header but no rows"),
        (
            b"loan_amnt,term,annual_inc,loan_status\n5000,36,1,Fully Paid \xff\xfe\n",
            "not valid utf-8",
        ),
    ],
    ids=["empty", "not-loans", "semicolons", "header-only", "latin1"],
)
def test_bad_files_fail_clearly_and_change_nothing(
    warehouse_settings, generated, tmp_path, content, message
):
    steps.ingest(warehouse_settings, [str(generated)])
    before = counts(warehouse_settings)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    with pytest.raises(InputFileError) as info:
        steps.ingest(warehouse_settings, [str(bad)])
    assert message in str(info.value)
    assert counts(warehouse_settings) == before


def test_latin1_file_loads_with_its_encoding(sqlite_settings, tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(
        b"id,loan_amnt,term,annual_inc,loan_status,emp_title\n"
        b"1,5000,36 months,40000,Fully Paid,Caf\xe9 owner\n"
    )
    sqlite_settings.ingest.encoding = "latin-1"
    (result,), _ = steps.ingest(sqlite_settings, [str(bad)])
    assert result.rows_silver_new == 1
    warehouse = Warehouse.open(sqlite_settings)
    with warehouse.engine.connect() as conn:
        title = conn.execute(sa.text("SELECT emp_title FROM silver_loans")).scalar_one()
    warehouse.engine.dispose()
    assert title == "Café owner"


def test_truncated_gzip_fails_and_changes_nothing(warehouse_settings, generated, tmp_path):
    truncated = tmp_path / "truncated.csv.gz"
    data = generated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="gzip data is truncated or corrupt"):
        steps.ingest(warehouse_settings, [str(truncated)])
    assert counts(warehouse_settings)["bronze_loans"] == 0
    assert counts(warehouse_settings)["ingestion_batches"] == 0


def test_folders_globs_and_fsspec_urls(sqlite_settings, tmp_path, generated):
    folder = tmp_path / "landing"
    folder.mkdir()
    shutil.copy(generated, folder / "a.csv.gz")
    with gzip.open(generated) as src, open(folder / "b.csv", "wb") as dst:
        shutil.copyfileobj(src, dst)  # same rows, different bytes: a second batch of updates
    (folder / "notes.txt").write_text("not a loan file")
    results, status = steps.ingest(sqlite_settings, [str(folder)])
    assert [Path(r.source).name for r in results] == ["a.csv.gz", "b.csv"]
    assert results[1].rows_silver_updated == results[0].rows_silver_new
    again, _ = steps.ingest(sqlite_settings, [f"file://{folder}/*.csv*"])
    assert all(r.skipped for r in again)
    assert status.reconciled
    with pytest.raises(InputFileError, match="no such file or folder"):
        steps.ingest(sqlite_settings, [str(tmp_path / "absent.csv")])


def test_processes_starting_together_migrate_one_at_a_time(warehouse_settings, profile):
    """Service workers and replicas open the warehouse at the same moment: every one
    succeeds and the schema is built once (without the lock, the losers of the race failed
    with duplicate tables or 'expected to match one row' in alembic_version)."""
    if warehouse_settings.warehouse.url is None:
        warehouse_settings.ensure_home()
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_at_once() -> None:
        engine = make_engine(warehouse_settings.warehouse_url)
        try:
            start.wait()
            migrate(engine, profile)
        except BaseException as exc:
            failures.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=open_at_once, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "migrations deadlocked"
    assert failures == []
    engine = make_engine(warehouse_settings.warehouse_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert len(versions) == 1


def test_a_warehouse_refuses_another_profile(sqlite_settings, generated, tmp_path):
    steps.ingest(sqlite_settings, [str(generated)])
    other = tmp_path / "other.yaml"
    other.write_text(
        "name: other\ntarget: {column: s, bad: [B], good: [G]}\n"
        "columns:\n  s: {parser: text, role: target}\n  x: {parser: number}\n"
    )
    sqlite_settings.data.profile = str(other)
    with pytest.raises(WarehouseError, match="created for profile 'lendingclub'"):
        steps.status(sqlite_settings)


def test_real_lendingclub_extract_without_id_or_date(warehouse_settings, real_data):
    (result,), status = steps.ingest(warehouse_settings, [str(real_data)])
    assert result.rows_bronze == 39_786
    assert status.reconciled, status.problems
    warehouse = Warehouse.open(warehouse_settings)
    with warehouse.engine.connect() as conn:
        gold = pd.read_sql("SELECT * FROM gold_loan_features", conn)
    warehouse.engine.dispose()
    assert len(gold) == result.rows_silver_new > 39_000
    assert gold["label"].notna().all()
    assert gold["label"].mean() == pytest.approx(0.143, abs=0.01)
    assert gold["vintage"].isna().all()
    assert gold["loan_id"].str.startswith("h").all()
    assert gold["revol_util"].dropna().between(0, 2).all()
