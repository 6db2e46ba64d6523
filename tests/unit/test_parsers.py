import pandas as pd
import pytest

from loanrisk.data.parsers import clean_text, parse_column
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
