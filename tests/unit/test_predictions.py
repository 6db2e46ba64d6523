"""One definition of the prediction log's row: both writers fill exactly the table's columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa

from loanrisk.predictions import LOG_COLUMNS, log_row, log_table
from loanrisk.warehouse.schema import predictions

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_the_row_definition_is_the_tables_columns():
    assert set(LOG_COLUMNS) == {c.name for c in predictions.columns}


def test_the_service_and_batch_rows_fill_the_same_columns_the_same_way():
    model = SimpleNamespace(name="loan-default", version="3", run_id="r", alias="production")
    result = {
        "loan_id": "L1",
        "pd": 0.12,
        "default_class": 0,
        "decision": "approve",
        "grade": "B",
        "reasons": ["Debt-to-income ratio"],
        "features": {"dti": 18.5, "fico_mid": math.nan},
    }
    row = log_row(
        prediction_id="p1",
        request_id="q1",
        client_id=42,
        model=model,
        record={"dti": 18.5},
        result=result,
        latency_ms=0.4,
        source="api",
        created_at=NOW,
    )
    assert tuple(row) == LOG_COLUMNS
    assert row["features"] == '{"dti": 18.5, "fico_mid": null}' and row["client_id"] == "42"
    scored = {
        "prediction_id": pa.array(["p2"]),
        "loan_id": pa.array(["L2"]),
        "input": pa.array(['{"dti": 18.5}']),
        "features": pa.array(['{"dti": 18.5, "fico_mid": null}']),
        "pd": pa.array([0.12]),
        "default_class": pa.array([0]),
        "decision": pa.array(["approve"]),
        "grade": pa.array(["B"]),
        "reasons": pa.array(['["Debt-to-income ratio"]']),
    }
    table, constants = log_table(
        scored,
        scoring_run_id="run",
        model_name="loan-default",
        model_version="3",
        alias="production",
        created_at=NOW,
    )
    assert set(table.column_names) | set(constants) == set(LOG_COLUMNS)
    assert not set(table.column_names) & set(constants)
    assert table.column("default_class").type == pa.int16()
