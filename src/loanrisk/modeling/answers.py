"""The packaged model's answers as a table: what batch scoring writes, for both engines.

``score_table`` is the one definition of a batch answer: ``loanrisk score`` calls it per
chunk, the Spark engine through the registered model's pyfunc
(``params={"output": "spark"}``), so both write the same Parquet and ``predictions`` rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loanrisk.data.jsonrows import arrow_column, frame_objects, json_literals, json_objects
from loanrisk.data.readers import as_text
from loanrisk.modeling.decision import REASON

if TYPE_CHECKING:
    from loanrisk.modeling.package import ScoringBundle

# What the model answers for one row in table form (``score_table``): the output
# columns (reasons as JSON text), then the prediction log's JSON of the application and of
# the model inputs (null on invalid rows).
SCORED_SCHEMA = pa.schema(
    [
        ("loan_id", pa.string()),
        ("pd", pa.float64()),
        ("default_class", pa.int64()),
        ("decision", pa.string()),
        ("grade", pa.string()),
        ("reasons", pa.string()),
        ("error", pa.string()),
        ("input", pa.string()),
        ("features", pa.string()),
    ]
)


def score_table(bundle: ScoringBundle, chunk: pd.DataFrame) -> pa.Table:
    """One chunk scored, one row per input row in order (``SCORED_SCHEMA``).

    The one definition of a batch answer, for both engines: ``loanrisk score`` calls it
    per chunk, the Spark engine through the registered model's pyfunc
    (``params={"output": "spark"}``), so the two write the same rows.
    """
    chunk = text_frame(chunk)
    out, features, decided = bundle.scored(chunk)
    valid = out["pd"].notna().to_numpy()
    at = np.full(len(out), -1, dtype=np.int64)  # each row's place among the scored rows
    at[features.index.to_numpy()] = np.arange(len(features))
    reasons = (
        decided.reason_array() if decided is not None else pa.array([], pa.list_(REASON))
    ).take(pa.array(at, mask=~valid))
    # The application as sent: the fields the model takes (not outcome columns of a file).
    fields = [c for c in chunk.columns if c in bundle.input_fields()]
    inputs = json_objects(fields, [arrow_column(chunk[field]) for field in fields])
    features_json = frame_objects(features).take(pa.array(at, mask=~valid))
    columns = {
        "loan_id": pc.cast(arrow_column(out["loan_id"]), pa.string()),
        "pd": pa.array(out["pd"].to_numpy(), pa.float64(), from_pandas=True),
        "default_class": pa.array(out["default_class"], pa.int64(), from_pandas=True),
        "decision": pa.array(out["decision"], pa.string(), from_pandas=True),
        "grade": pa.array(out["grade"], pa.string(), from_pandas=True),
        "reasons": pc.if_else(reasons.is_null(), None, json_literals(reasons)),
        "error": pa.array(out["error"], pa.string(), from_pandas=True),
        "input": pc.if_else(pa.array(valid), inputs, None),
        "features": features_json,
    }
    return pa.table(columns, schema=SCORED_SCHEMA)


def text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as Arrow-backed text, as ``read_chunks`` gives a file's rows (so a
    frame handed over by Spark is scored and logged exactly as the same file read here)."""
    if all(_is_text(t) for t in frame.dtypes):
        return frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    texts = [as_text(c.combine_chunks()) for c in table.columns]
    out = pa.table(texts, names=table.column_names).to_pandas(types_mapper=pd.ArrowDtype)
    out.index = frame.index
    return out


def _is_text(dtype: object) -> bool:
    return isinstance(dtype, pd.ArrowDtype) and pa.types.is_string(dtype.pyarrow_dtype)


def spark_columns(table: pa.Table) -> pd.DataFrame:
    """``table`` as ``mlflow.pyfunc.spark_udf`` carries it through a struct faithfully:
    each text value in a one-element list, null as null (MLflow's conversion turns a null
    text field into the string "None"), numbers as floats (NaN for null)."""
    frame = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(column.type):
            frame[name] = pd.Series(
                [None if v is None else [v] for v in column.to_pylist()], dtype=object
            )
        else:
            frame[name] = column.to_numpy(zero_copy_only=False).astype("float64")
    return frame
