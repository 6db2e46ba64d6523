import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loanrisk.data.parsers import clean_text, parse_column
from loanrisk.data.readers import read_chunks
from loanrisk.data.scalar import parse_value
from loanrisk.errors import InputFileError
from loanrisk.profiles import ColumnSpec


def parse(parser: str, values: list, **spec):
    series = pd.Series(values, index=range(100, 100 + len(values)))
    typed, problems = parse_column(series, ColumnSpec(parser=parser, role="info", **spec))
    return list(typed), dict(problems)


@pytest.mark.unit
def test_numbers_accept_raw_and_converted_forms():
    values, problems = parse("number", ["1,200.50", "$900", " 3 ", "7.0", None, "", "n/a"])
    assert values[:4] == [1200.5, 900.0, 3.0, 7.0]
    assert all(pd.isna(v) for v in values[4:])
    assert problems == {}


@pytest.mark.unit
def test_unparseable_numbers_are_reported_with_the_value():
    values, problems = parse("number", ["12,5k", "#VALUE!", "1e400", "5"])
    assert values[3] == 5.0
    assert problems == {
        100: "'12,5k' is not a number",
        101: "'#VALUE!' is not a number",
        102: "'1e400' is not a number",
    }


@pytest.mark.unit
def test_percent_with_sign_and_as_fraction():
    values, problems = parse("percent", ["13.56%", "0.1356", " 83.7%", "abc%"])
    assert values[0] == pytest.approx(0.1356)
    assert values[1] == pytest.approx(0.1356)
    assert values[2] == pytest.approx(0.837)
    assert problems == {103: "'abc%' is not a percentage"}


@pytest.mark.unit
def test_term_months():
    values, problems = parse("term_months", [" 36 months", "60 months", "36", 60, "36.0", "3 yrs"])
    assert values[:5] == [36, 60, 36, 60, 36]
    assert list(problems) == [105]


@pytest.mark.unit
def test_emp_length_forms():
    values, problems = parse(
        "emp_length", ["10+ years", "< 1 year", "1 year", "4 years", "n/a", "7", "ten"]
    )
    assert values[:4] == [10, 0, 1, 4]
    assert pd.isna(values[4])
    assert values[5] == 7
    assert list(problems) == [106]


@pytest.mark.unit
def test_months_from_lendingclub_iso_and_timestamps():
    values, problems = parse(
        "month", ["Dec-2015", "dec-15", "2015-12-01", "2015-12", "2015-12-17 00:00:00", "13-2015"]
    )
    assert all(v == pd.Timestamp("2015-12-01") for v in values[:5])
    assert list(problems) == [105]


@pytest.mark.unit
def test_zip3_and_integer():
    zips, zip_problems = parse("zip3", ["860xx", "86001", "860", "86"])
    assert zips[:3] == ["860", "860", "860"] and list(zip_problems) == [103]
    ints, int_problems = parse("integer", ["3", "3.0", "3.5"])
    assert ints[:2] == [3, 3]
    assert int_problems == {102: "'3.5' is not a whole number"}


@pytest.mark.unit
def test_range_bounds_name_the_limit():
    _, problems = parse("number", ["-5", "50", "500"], min=0, max=100)
    assert problems == {100: "'-5' is below the minimum 0", 102: "'500' is above the maximum 100"}


@pytest.mark.unit
def test_clean_text_turns_missing_spellings_into_none():
    cleaned = clean_text(pd.Series([" a ", "", "N/A", "null", None, "NaN", "b"]))
    assert list(cleaned) == ["a", None, None, None, None, None, "b"]


def both_paths(parser: str, values: list, **spec) -> tuple[list, dict]:
    """Frame and scalar parsers on the same values: they must agree, value and message."""
    column = ColumnSpec(parser=parser, role="info", **spec)
    typed, problems = parse(parser, values, **spec)
    for i, value in enumerate(values):
        one, problem = parse_value(value, column)
        frame_value = None if pd.isna(typed[i]) else typed[i]
        assert one == frame_value, (value, one, frame_value)
        assert problem == problems.get(100 + i), (value, problem, problems.get(100 + i))
    return typed, problems


@pytest.mark.unit
def test_missing_codes_are_missing_however_the_number_is_written():
    values, problems = both_paths(
        "integer", ["96", "98.0", " 98 ", 96.0, "3", "97", "XX"], missing=[96, 98, "XX"], max=50
    )
    assert [None if pd.isna(v) else v for v in values] == [None, None, None, None, 3, None, None]
    assert problems == {105: "'97' is above the maximum 50"}


@pytest.mark.unit
def test_a_missing_code_in_a_text_column_is_matched_as_written():
    values, problems = both_paths("category", ["U", "u", "A", None], missing=["U"])
    assert [None if pd.isna(v) else v for v in values] == [None, "u", "A", None]
    assert problems == {}


@pytest.mark.unit
def test_percent_written_in_percent_units():
    values, problems = both_paths(
        "percent", ["16.02", "16.02%", 7, "0.5", "x"], unit="percent", max=1
    )
    assert values[:4] == pytest.approx([0.1602, 0.1602, 0.07, 0.005])
    assert problems == {104: "'x' is not a percentage"}
    # The same column read as fractions: 16.02 is 1602 %, above the maximum.
    _, as_fractions = both_paths("percent", ["16.02", "0.16"], max=1)
    assert as_fractions == {100: "'16.02' is above the maximum 1"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("action", "expected", "expected_problems"),
    [
        (
            "reject",
            [None, 30, None],
            {100: "'144' is above the maximum 120", 102: "'-1' is below the minimum 18"},
        ),
        ("missing", [None, 30, None], {}),
        ("clip", [120, 30, 18], {}),
    ],
)
def test_out_of_range_values_are_rejected_set_missing_or_clipped(
    action, expected, expected_problems
):
    values, problems = both_paths(
        "integer", ["144", "30", "-1"], min=18, max=120, out_of_range=action
    )
    assert [None if pd.isna(v) else v for v in values] == expected
    assert problems == expected_problems


@pytest.mark.unit
def test_clip_to_a_fractional_bound_keeps_whole_numbers_whole():
    values, _ = both_paths("integer", ["0", "10"], min=0.5, max=9.5, out_of_range="clip")
    assert list(values) == [1, 9]
    floats, _ = both_paths("number", ["0", "10"], min=0.5, max=9.5, out_of_range="clip")
    assert list(floats) == [0.5, 9.5]


@pytest.mark.unit
def test_categories_are_checked_on_both_paths():
    _values, problems = both_paths("category", ["A", "Z", None], categories=["A", "B"])
    assert problems == {101: "'Z' is not one of A, B"}
    kept, none = both_paths("category", ["A", "Z"], categories=["A", "B"], out_of_range="missing")
    assert [None if pd.isna(v) else v for v in kept] == ["A", None] and none == {}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"parser": "number", "unit": "percent"}, "unit applies to the percent parser only"),
        ({"parser": "number", "out_of_range": "clip"}, "needs min, max or categories"),
        (
            {"parser": "category", "categories": ["A"], "out_of_range": "clip"},
            "numeric columns only",
        ),
        ({"parser": "text", "categories": ["A"]}, "categories apply to the category parser only"),
    ],
)
def test_incoherent_column_options_are_refused(spec, problem):
    with pytest.raises(ValueError, match=problem):
        ColumnSpec(**spec)


@pytest.mark.unit
def test_a_parquet_column_without_a_text_form_is_refused_naming_file_and_column(tmp_path):
    base = {"id": pa.array(["1", "2"]), "loan_amnt": pa.array([5000, 7000])}
    cases = {
        "nested.parquet": ("extra", pa.array([{"a": 1}, {"a": 2}]), "holds struct<a: int64>"),
        "listed.parquet": ("emp_title", pa.array([["x"], ["y"]]), "holds list<element: string>"),
        "bytes.parquet": ("emp_title", pa.array([b"\xff", b"ok"]), "has no text form"),
        # text whose writer never checked it was UTF-8 (was a traceback in ingest and score)
        "unchecked.parquet": (
            "emp_title",
            pa.array([b"ok", b"bad\xff"]).view(pa.string()),
            "holds text that is not valid UTF-8",
        ),
    }
    for name, (column, values, problem) in cases.items():
        path = tmp_path / name
        pq.write_table(pa.table(base | {column: values}), path)
        with pytest.raises(
            InputFileError,
            match=rf"^{re.escape(str(path))}: column '{column}' {re.escape(problem)}",
        ):
            list(read_chunks(str(path), chunk_size=100))
    plain = tmp_path / "plain.parquet"  # numbers and text read as text, as before
    pq.write_table(pa.table(base | {"emp_title": pa.array(["x", None])}), plain)
    (chunk,) = read_chunks(str(plain), chunk_size=100)
    assert chunk["loan_amnt"].tolist() == ["5000", "7000"]
