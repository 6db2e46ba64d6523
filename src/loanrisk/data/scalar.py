"""One-application versions of the parsers and derived features, without pandas.

The frame functions (``parsers``, ``refine``, ``build``) are the reference; these give the
same values for a single record in microseconds, for the API and the packaged model's
fast path. A test checks both paths agree on thousands of generated and real rows.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from loanrisk.data import formats
from loanrisk.data.parsers import PROBLEM_TEXT, clip_bound, id_problem, not_one_of
from loanrisk.data.refine import KEY_SEPARATOR, key_of
from loanrisk.profiles.model import NUMERIC_PARSERS, ColumnSpec, DerivedSpec, Parser, Profile

_MISSING = formats.MISSING
_NUMBER = re.compile(formats.NUMBER, re.ASCII)
_STRIP = re.compile(formats.NUMBER_NOISE)
_TERM = re.compile(formats.TERM_MONTHS, re.ASCII)
_EMP = re.compile(formats.EMP_YEARS, re.ASCII)
_UNDER_ONE = re.compile(formats.UNDER_ONE_YEAR)
_ZIP = re.compile(formats.ZIP3, re.ASCII)

Typed = float | int | str | date | None


def clean(value: Any) -> str | None:
    """Text of a raw value, stripped; None for the spellings of "missing"."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    elif isinstance(value, datetime | date):
        text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    else:
        text = str(value)
    text = text.strip()
    return None if text in _MISSING else text


def _number(text: str) -> float | None:
    cleaned = _STRIP.sub("", text)
    if not _NUMBER.fullmatch(cleaned):
        return None
    value = float(cleaned)
    return value if math.isfinite(value) else None


def _integer(text: str) -> int | None:
    value = _number(text)
    return int(value) if value is not None and value.is_integer() else None


def _percent(text: str) -> float | None:
    if text.endswith("%"):
        value = _number(text.rstrip("%"))
        return None if value is None else value / 100.0
    return _number(text)


def _percent_points(text: str) -> float | None:
    value = _number(text.rstrip("%"))
    return None if value is None else value / 100.0


def _pattern(pattern: re.Pattern[str]) -> Callable[[str], int | None]:
    @lru_cache(maxsize=1024)
    def parse(text: str) -> int | None:
        found = pattern.fullmatch(text)
        return int(found.group(1)) if found else None

    return parse


def _emp_length(text: str) -> int | None:
    return 0 if _UNDER_ONE.fullmatch(text) else _pattern(_EMP)(text)


@lru_cache(maxsize=4096)  # months repeat; strptime is the slowest parser by far
def _month(text: str) -> date | None:
    for fmt in formats.MONTH_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if formats.FIRST_YEAR <= parsed.year <= formats.LAST_YEAR:
            return date(parsed.year, parsed.month, 1)
    return None


def _zip3(text: str) -> str | None:
    found = _ZIP.fullmatch(text)
    return found.group(1) if found else None


_PARSE: dict[Parser, Callable[[str], Typed]] = {
    Parser.NUMBER: _number,
    Parser.INTEGER: _integer,
    Parser.PERCENT: _percent,
    Parser.TERM_MONTHS: _pattern(_TERM),
    Parser.EMP_LENGTH: _emp_length,
    Parser.MONTH: _month,
    Parser.CATEGORY: lambda text: text,
    Parser.TEXT: lambda text: text,
    Parser.ZIP3: _zip3,
}


def parse_value(value: Any, spec: ColumnSpec) -> tuple[Typed, str | None]:
    """(typed value, problem) for one raw value; the problem reads like the frame path's."""
    text = clean(value)
    if text is None:
        return None, None
    if "\x00" in text:
        return None, f"{text!r} contains a NUL character"
    if spec.missing and _is_code(text, spec):
        return None, None
    typed = (_percent_points if spec.unit == "percent" else _PARSE[spec.parser])(text)
    if typed is None:
        return None, f"{text!r} {PROBLEM_TEXT[spec.parser]}"
    if spec.parser in NUMERIC_PARSERS:
        number = float(typed)  # type: ignore[arg-type]
        for bound, lower, word in (
            (spec.min, True, "below the minimum"),
            (spec.max, False, "above the maximum"),
        ):
            if bound is None or (number >= bound if lower else number <= bound):
                continue
            if spec.out_of_range == "clip":
                return clip_bound(bound, lower, isinstance(typed, int)), None
            if spec.out_of_range == "missing":
                return None, None
            return None, f"{text!r} is {word} {bound:g}"
    elif spec.categories and typed not in spec.categories:
        if spec.out_of_range == "missing":
            return None, None
        return None, f"{text!r} {not_one_of(spec.categories)}"
    return typed, None


def _is_code(text: str, spec: ColumnSpec) -> bool:
    """Whether ``text`` is one of the column's missing codes (see ``parsers``)."""
    if text in spec.missing:
        return True
    if spec.parser not in NUMERIC_PARSERS or not spec.missing_numbers:
        return False
    return _number(text) in spec.missing_numbers


def refine_record(
    record: Mapping[str, Any], profile: Profile, lookup: Mapping[str, str] | None = None
) -> tuple[dict[str, Typed], dict[str, str]]:
    """Typed profile columns of one application and the problems, by column name.

    Like ``refine(..., applications=True)``: only the columns scoring reads
    (``Profile.reads``) are parsed and required; ``lookup`` is
    ``profile.header_lookup(applications=True)``, computed once by the caller.
    """
    lookup = lookup if lookup is not None else profile.header_lookup(applications=True)
    raw: dict[str, Any] = {}
    for key, value in record.items():
        name = lookup.get(key.strip().lower().replace(" ", "_"))
        if name is not None and name not in raw:
            raw[name] = value
    typed: dict[str, Typed] = {}
    problems: dict[str, str] = {}
    for name, value in raw.items():
        typed[name], problem = parse_value(value, profile.columns[name])
        if problem is not None:
            problems[name] = problem
    for name in profile.required:
        if profile.reads(name) and name not in problems and typed.get(name) is None:
            problems[name] = "required value is missing"
    loan_id = typed.get(profile.id.column) if profile.id.column else None
    if isinstance(loan_id, str) and (problem := id_problem(loan_id)) is not None:
        problems[profile.id.column], typed[profile.id.column] = problem, None  # type: ignore[index]
    return typed, problems


def application_key(typed: Mapping[str, Typed], key_columns: tuple[list[str], list[str]]) -> str:
    """The derived loan id of one application: ``refine.application_keys`` for one row.
    ``key_columns`` is the profile's (``Profile.key_columns``, computed once by the caller:
    it costs more than the key)."""
    numbers, texts = key_columns
    values = []
    for name in numbers:
        value = typed.get(name)
        if value is None:
            values.append(math.nan)
        elif isinstance(value, date):
            values.append(value.year * 12.0 + value.month)
        else:
            values.append(float(value))
    packed = struct.pack(f"<{len(values)}d", *values)
    return key_of(packed, KEY_SEPARATOR.join(str(typed.get(n) or "") for n in texts))


def derive(typed: Mapping[str, Typed], spec: DerivedSpec) -> float:
    """One derived feature, NaN when an input is missing (as in ``build_features``)."""
    first, second = (typed.get(name) for name in spec.inputs)
    if first is None or second is None:
        return math.nan
    if spec.op == "months_between":
        assert isinstance(first, date) and isinstance(second, date)
        return float((second.year - first.year) * 12 + (second.month - first.month)) * spec.scale
    a, b = float(first), float(second)  # type: ignore[arg-type]
    if spec.op == "mean":
        return (a + b) / 2.0 * spec.scale
    return (a / b) * spec.scale if b > 0 else math.nan
