"""MLflow's scoring input formats (``/invocations``): JSON dataframe_split,
dataframe_records, instances or inputs, or CSV, read into application dicts."""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd
from fastapi.exceptions import RequestValidationError

from loanrisk.serving import bodies
from loanrisk.serving.schemas import EXAMPLE


class InvocationError(Exception):
    """A body /invocations cannot read: answered 400 in MLflow's error shape."""


def mlflow_records(content_type: str, raw: bytes) -> list[dict[str, Any]]:
    """Rows from any of MLflow's scoring formats, as dicts; ``InvocationError`` otherwise."""
    if content_type.startswith("text/csv"):
        try:
            frame = pd.read_csv(io.StringIO(raw.decode("utf-8")), dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, ValueError, csv.Error, pd.errors.ParserError) as exc:
            raise InvocationError(f"not a CSV body: {str(exc)[:200]}") from exc
        rows = [{str(k): v for k, v in r.items() if v != ""} for r in frame.to_dict("records")]
        if not rows:
            raise InvocationError("the CSV body has no rows")
        return _checked_rows(rows, "CSV")
    try:
        payload = bodies.parse_json(raw)
    except RequestValidationError as exc:
        raise InvocationError(f"not a JSON body: {exc.errors()[0]['msg']}") from exc
    if not isinstance(payload, dict):
        raise InvocationError(
            "expected a JSON object with dataframe_split, dataframe_records, instances or inputs"
        )
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or "columns" not in split or "data" not in split:
            raise InvocationError("dataframe_split needs 'columns' and 'data'")
        columns, data = split["columns"], split["data"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvocationError("dataframe_split.columns must be a list of names")
        if not isinstance(data, list) or not all(
            isinstance(row, list) and len(row) == len(columns) for row in data
        ):
            raise InvocationError(
                f"dataframe_split.data must be a list of rows of {len(columns)} values"
            )
        rows = [dict(zip(columns, row, strict=True)) for row in data]
        return _checked_rows(rows, "dataframe_split")
    for key in ("dataframe_records", "instances", "inputs"):
        if key not in payload:
            continue
        value = payload[key]
        if isinstance(value, dict):  # columnar: {"col": [v1, v2], ...}
            lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
            if -1 in lengths or len(lengths) > 1:
                raise InvocationError(f"{key} as an object needs lists of one length")
            length = lengths.pop() if lengths else 0
            rows = [{c: value[c][i] for c in value} for i in range(length)]
            return _checked_rows(rows, key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return _checked_rows(value, key)
        raise InvocationError(f"{key} must be a list of objects or an object of lists")
    raise InvocationError("expected one of dataframe_split, dataframe_records, instances, inputs")


def _checked_rows(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Rows whose values are scalars (JSON null, booleans, numbers or text)."""
    for index, row in enumerate(rows):
        for name, value in row.items():
            if isinstance(value, list | dict):
                raise InvocationError(f"{where} row {index}, column {name!r}: not a scalar value")
    return rows


def invocations_body() -> dict[str, Any]:
    row = {"type": "object", "additionalProperties": True}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "One of MLflow's input formats.",
                    "minProperties": 1,
                    "anyOf": [
                        {"required": [key]}
                        for key in ("dataframe_split", "dataframe_records", "instances", "inputs")
                    ],
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}},
                            },
                        },
                        "dataframe_records": {"type": "array", "items": row},
                        "instances": {"type": "array", "items": row},
                        "inputs": {"anyOf": [{"type": "array", "items": row}, row]},
                    },
                },
                "example": {"dataframe_records": [EXAMPLE]},
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
