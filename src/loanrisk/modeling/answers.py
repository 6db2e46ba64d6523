"""The packaged model's answers as a table: what batch scoring writes, for both engines.

``score_table`` is the one definition of a batch answer: ``loanrisk score`` calls it per
chunk (as ``answer`` then ``Answer.table``), the Spark engine through the registered
model's pyfunc (``params={"output": "spark"}``), so both write the same Parquet and
``predictions`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    per chunk (in its two halves: ``answer`` while scoring, ``Answer.table`` on its writer
    thread), the Spark engine through the registered model's pyfunc
    (``params={"output": "spark"}``), so the two write the same rows.
    """
    return answer(bundle, chunk).table()


@dataclass(frozen=True)
class Answer:
    """A chunk's answer before its JSON: the model's output frame, and what the prediction
    log's documents are made of. ``table`` builds those documents (about a quarter of a
    chunk's time, in Arrow kernels that release the GIL), so batch scoring leaves it to
    the thread that writes the chunk while the next one is scored."""

    out: pd.DataFrame  # OUTPUT_COLUMNS but reasons, one row per input row
    chunk: pd.DataFrame  # the rows as read (text)
    fields: list[str]  # the chunk's columns the model takes: the logged application
    features: pd.DataFrame  # model inputs of the valid rows, in order
    reasons: pa.Array  # per valid row, in order (``Decisions.reason_array``)

    @property
    def valid(self) -> np.ndarray:
        return self.out["pd"].notna().to_numpy()

    def table(self) -> pa.Table:
        valid, out = self.valid, self.out
        at = np.full(len(out), -1, dtype=np.int64)  # each row's place among the scored rows
        at[self.features.index.to_numpy()] = np.arange(len(self.features))
        places = pa.array(at, mask=~valid)
        reasons = self.reasons.take(places)
        inputs = json_objects(self.fields, [arrow_column(self.chunk[f]) for f in self.fields])
        columns = {
            "loan_id": pc.cast(arrow_column(out["loan_id"]), pa.string()),
            "pd": pa.array(out["pd"].to_numpy(), pa.float64(), from_pandas=True),
            "default_class": pa.array(out["default_class"], pa.int64(), from_pandas=True),
            "decision": pa.array(out["decision"], pa.string(), from_pandas=True),
            "grade": pa.array(out["grade"], pa.string(), from_pandas=True),
            "reasons": pc.if_else(reasons.is_null(), None, json_literals(reasons)),
            "error": pa.array(out["error"], pa.string(), from_pandas=True),
            "input": pc.if_else(pa.array(valid), inputs, None),
            "features": frame_objects(self.features).take(places),
        }
        return pa.table(columns, schema=SCORED_SCHEMA)


def answer(bundle: ScoringBundle, chunk: pd.DataFrame) -> Answer:
    """A chunk scored: PDs, decisions, grades and reasons; its JSON is ``Answer.table``'s."""
    chunk = text_frame(chunk)
    out, features, decided = bundle.scored(chunk)
    reasons = decided.reason_array() if decided is not None else pa.array([], pa.list_(REASON))
    # The application as sent: the fields the model takes (not outcome columns of a file).
    fields = [c for c in chunk.columns if bundle.reads(c)]
    return Answer(out, chunk, fields, features, reasons)


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
