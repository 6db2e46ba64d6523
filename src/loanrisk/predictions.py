"""The prediction log's row: what is recorded about every answered prediction.

One definition for both writers: ``log_row`` (one application, the service) and
``log_table`` (a scored chunk, batch scoring, as Arrow columns). Both fill every column
of ``predictions`` (``LOG_COLUMNS``) the same way: the application as sent and the model
inputs as JSON objects (NaN as null), the reasons as a JSON list, the model that answered.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import pyarrow as pa

LOG_COLUMNS = (
    "prediction_id",
    "request_id",
    "client_id",
    "loan_id",
    "model_name",
    "model_version",
    "run_id",
    "alias",
    "input",
    "features",
    "pd",
    "default_class",
    "decision",
    "grade",
    "reasons",
    "latency_ms",
    "source",
    "scoring_run_id",
    "created_at",
)


def log_row(
    *,
    prediction_id: str,
    request_id: str,
    client_id: Any,
    model: Any,
    record: dict[str, Any],
    result: dict[str, Any],
    latency_ms: float,
    source: str,
    created_at: datetime,
) -> dict[str, Any]:
    """The row of one answered application (``model``: name, version, run_id, alias;
    ``result``: the fast scorer's answer, with the model inputs under ``features``)."""
    features = {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in result["features"].items()
    }
    return {
        "prediction_id": prediction_id,
        "request_id": request_id,
        "client_id": None if client_id is None else str(client_id),
        "loan_id": result["loan_id"],
        "model_name": model.name,
        "model_version": model.version,
        "run_id": model.run_id,
        "alias": model.alias,
        "input": json.dumps(record, default=str),
        "features": json.dumps(features),
        "pd": result["pd"],
        "default_class": result["default_class"],
        "decision": result["decision"],
        "grade": result["grade"],
        "reasons": json.dumps(result["reasons"]),
        "latency_ms": latency_ms,
        "source": source,
        "scoring_run_id": None,
        "created_at": created_at,
    }


def log_table(
    scored: dict[str, pa.Array],
    *,
    scoring_run_id: str,
    model_name: str,
    model_version: str,
    alias: str,
    created_at: datetime,
) -> tuple[pa.Table, dict[str, Any]]:
    """The rows of a batch-scored chunk: (their own columns, the columns with one value
    for the whole run). ``scored`` holds prediction_id, loan_id, input and features (JSON
    text), pd, default_class, decision, grade and reasons (JSON text)."""
    constants = {
        "request_id": scoring_run_id,
        "client_id": None,
        "model_name": model_name,
        "model_version": model_version,
        "run_id": None,
        "alias": alias,
        "latency_ms": None,
        "source": "batch",
        "scoring_run_id": scoring_run_id,
        "created_at": created_at,
    }
    columns = {name: scored[name] for name in LOG_COLUMNS if name not in constants}
    columns["default_class"] = columns["default_class"].cast(pa.int16())
    return pa.table(columns), constants
