"""Column-wise JSON rows: the same documents ``json`` would write, for every kind of value."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loanrisk.data.jsonrows import (
    WHOLE_LIMIT,
    frame_objects,
    json_arrays,
    json_literals,
    json_objects,
)
from loanrisk.warehouse.ingest import bronze_payload

pytestmark = pytest.mark.unit


def loads(array: pa.Array) -> list:
    return [json.loads(text) for text in array.to_pylist()]


def test_strings_are_escaped_like_json_dumps():
    values = [
        'say "hi"',
        "back\\slash",
        "line\nbreak\r\ttab",
        "unicode: é ✓ 漢",
        "",
        None,
        "bell\x07 and nul\x00",  # rare control characters: json.dumps does these rows
        "/slash",
    ]
    literals = json_literals(pa.array(values, pa.string()))
    assert loads(literals) == values
    # Without rare controls the vectorised path is taken; still valid, same values.
    plain = values[:6]
    assert loads(json_literals(pa.array(plain))) == plain


def test_numbers_round_trip_and_non_finite_become_null():
    floats = [0.1, 1 / 3, 1e-7, 1.5e20, -0.0, 123456789.123456789, math.nan, math.inf, None]
    decoded = loads(json_literals(pa.array(floats, pa.float64())))
    assert decoded[:6] == floats[:6]  # exact: shortest round-trip text
    assert decoded[6:] == [None, None, None]
    assert loads(json_literals(pa.array([1, None, -(2**62)]))) == [1, None, -(2**62)]
    assert loads(json_literals(pa.array([True, False, None]))) == [True, False, None]


def test_whole_numbers_are_spelled_as_the_shortest_round_trip_text():
    """A column of whole float64 values takes the integer cast: the text must be exactly
    what the shortest round-trip form gives, up to where that form turns to exponents."""
    rng = np.random.default_rng(3)
    magnitudes = 10.0 ** rng.integers(0, 10, size=20_000)
    whole = np.trunc(rng.uniform(-1, 1, size=20_000) * magnitudes) + 0.0  # no -0.0
    edges = [0.0, 1.0, -1.0, WHOLE_LIMIT - 1, -(WHOLE_LIMIT - 1), 2.0**31, -(2.0**31)]
    numbers = pa.array([*whole, *edges, math.nan, math.inf, None], pa.float64())
    finite = pc.is_finite(numbers)
    shortest = pc.fill_null(pc.if_else(finite, pc.cast(numbers, pa.string()), None), "null")
    assert json_literals(numbers).to_pylist() == shortest.to_pylist()
    edge_text = ["0", "1", "-1", "9999999999", "-9999999999", "2147483648", "-2147483648"]
    assert shortest.to_pylist()[-10:-3] == edge_text
    # Columns the integer cast would spell differently keep the shortest form.
    for other in ([5.0, -0.0], [5.0, WHOLE_LIMIT], [5.0, 0.5], [5.0, 1e300]):
        array = pa.array(other, pa.float64())
        assert json_literals(array).to_pylist() == pc.cast(array, pa.string()).to_pylist()
    assert json_literals(pa.array([1e10, 3.0], pa.float32())).to_pylist() == ["1e+10", "3"]


def test_dates_lists_dictionaries_and_objects():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert loads(json_literals(pa.array([date(2026, 1, 2), None]))) == ["2026-01-02", None]
    assert json.loads(json_literals(pa.array([when])).to_pylist()[0]).startswith("2026-01-02")
    lists = pa.array([["a", 'b"'], [], None, [None]], pa.list_(pa.string()))
    assert loads(json_literals(lists)) == [["a", 'b"'], [], None, [None]]
    assert loads(json_literals(lists.slice(1))) == [[], None, [None]]
    categories = pa.array(["x", "y", None, "x"]).dictionary_encode()
    assert loads(json_literals(categories)) == ["x", "y", None, "x"]
    structs = pa.array([{"a": 1}, None])
    assert loads(json_literals(structs)) == [{"a": 1}, None]


def test_objects_match_pandas_records():
    frame = pd.DataFrame(
        {
            "text": ["a", None, 'q"uote'],
            "number": [1.5, np.nan, 3.0],
            "integer": pd.array([1, None, 3], dtype="Int64"),
            "category": pd.Categorical(["low", "high", None]),
            "flag": [True, False, True],
            "mixed": [36, "60 months", None],  # mixed Python types: written as text
            "arrow": pd.array(["x", None, "z"], dtype=pd.ArrowDtype(pa.string())),
        }
    )
    got = loads(frame_objects(frame))
    assert got == [
        {
            "text": "a",
            "number": 1.5,
            "integer": 1,
            "category": "low",
            "flag": True,
            "mixed": "36",
            "arrow": "x",
        },
        {
            "text": None,
            "number": None,
            "integer": None,
            "category": "high",
            "flag": False,
            "mixed": "60 months",
            "arrow": None,
        },
        {
            "text": 'q"uote',
            "number": 3.0,
            "integer": 3,
            "category": None,
            "flag": True,
            "mixed": None,
            "arrow": "z",
        },
    ]
    # Keys in column order, and odd key names escaped.
    assert list(json.loads(frame_objects(frame).to_pylist()[0])) == list(frame.columns)
    odd = frame_objects(pd.DataFrame({'we"ird\nkey': ["v"]})).to_pylist()
    assert json.loads(odd[0]) == {'we"ird\nkey': "v"}


def test_arrays_and_empty_inputs():
    columns = [pa.array(["a", None]), pa.array([1.0, math.nan])]
    assert loads(json_arrays(columns)) == [["a", 1.0], [None, None]]
    assert json_objects([], []).to_pylist() == []
    assert frame_objects(pd.DataFrame(index=range(2))).to_pylist() == ["{}", "{}"]
    assert frame_objects(pd.DataFrame({"a": pd.Series([], dtype=object)})).to_pylist() == []


def test_bronze_payload_is_each_raw_row_as_a_json_array_of_text():
    raw = pd.DataFrame({"id": ["1", "2"], "note": ['he said "no"', None], "n": [36, "60"]})
    payload = bronze_payload(raw)
    assert loads(payload) == [["1", 'he said "no"', "36"], ["2", None, "60"]]
