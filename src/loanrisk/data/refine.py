"""Refine: raw text rows -> typed, validated silver rows plus rejects with reasons.

Pure functions on frames: the warehouse, training and the packaged model all call these.
The raw frame's index is the source row number; it is never modified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loanrisk.constants import (
    LABEL,
    LOAN_ID,
    ROW_PROBLEM,
    SOURCE_ROW,
    TARGET_RAW,
    VINTAGE,
    Label,
)
from loanrisk.data.parsers import ID_MAX_CHARS, clean_arrow, id_problem, moments, parse_column
from loanrisk.errors import InputFileError
from loanrisk.profiles.model import Parser, Profile, normalise_header

REJECT_COLUMNS = [SOURCE_ROW, LOAN_ID, "column_name", "reason"]
_LABEL_VALUE = {Label.BAD: 1, Label.GOOD: 0}


@dataclass(frozen=True)
class RefineResult:
    """Typed rows that passed validation, and one reject row per row that did not."""

    silver: pd.DataFrame
    rejects: pd.DataFrame
    # Every problem found, one row each (a reject row may have several): column_name,
    # reason. Loads count them to say why rows were rejected.
    problems: pd.DataFrame = field(default_factory=lambda: _no_problems())


def map_headers(
    columns: Iterable[str], profile: Profile, *, source: str = "input", applications: bool = False
) -> dict[str, str]:
    """Raw header -> profile column for the headers the profile knows (by name or alias);
    with ``applications``, only the columns scoring reads (``Profile.reads``).

    Two headers that read as one profile column (the same name twice, or a name and its
    alias) are refused: which of them holds the value is anybody's guess."""
    lookup = profile.header_lookup(applications=applications)
    mapping: dict[str, str] = {}
    first: dict[str, tuple[int, str]] = {}
    for position, raw in enumerate(map(str, columns), start=1):
        name = lookup.get(normalise_header(raw))
        if name is None:
            continue
        if name in first:
            at, earlier = first[name]
            raise InputFileError(
                f"{source}: columns {at} ({earlier!r}) and {position} ({raw!r}) both read as "
                f"{name}; keep one of them (or rename the other) so it is clear which to use"
            )
        first[name] = (position, raw)
        mapping[raw] = name
    return mapping


def check_columns(
    columns: list[str], profile: Profile, *, source: str = "input", applications: bool = False
) -> dict[str, str]:
    """Header mapping, or an error naming the required columns that are missing (of
    applications, only the required columns scoring reads: not the target)."""
    mapping = map_headers(columns, profile, source=source, applications=applications)
    required = [c for c in profile.required if not applications or profile.reads(c)]
    missing = [c for c in required if c not in mapping.values()]
    if missing:
        shown = ", ".join(repr(c) for c in columns[:12]) + (" ..." if len(columns) > 12 else "")
        hint = ""
        if len(columns) == 1:
            for sep in (";", "\t", "|"):
                if sep in columns[0]:
                    hint = f" The header contains {sep!r}: is the delimiter {sep!r}?"
                    break
        raise InputFileError(
            f"{source} is not a {profile.name} loan file: required column(s) "
            f"{', '.join(missing)} missing. Found {len(columns)} column(s): {shown}.{hint}"
        )
    return mapping


def application_keys(typed: dict[str, pd.Series], profile: Profile, index: pd.Index) -> pd.Series:
    """A stable key per row for files without an id column, from the typed values of the
    application's fields (``Profile.key_columns``; a field the file lacks counts as
    missing). ``scalar.application_key`` gives the same key for one record: numbers are
    hashed as float64 bytes, months as month numbers, text as written after cleaning."""
    numbers, texts = profile.key_columns
    matrix = np.full((len(index), len(numbers)), np.nan, dtype="<f8")
    for j, name in enumerate(numbers):
        if name in typed:
            matrix[:, j] = _key_numbers(typed[name])
    joined: list[str] = [""] * len(index)
    present = [
        pc.fill_null(pa.array(typed[n].to_numpy(dtype=object), pa.string()), "")
        if n in typed
        else pa.array([""] * len(index), pa.string())
        for n in texts
    ]
    if present:
        joined = pc.binary_join_element_wise(*present, KEY_SEPARATOR).to_pylist()
    keys = [key_of(matrix[i].tobytes(), text) for i, text in enumerate(joined)]
    return pd.Series(keys, index=index, dtype=object)


KEY_SEPARATOR = "\x1f"


def key_of(numbers: bytes, text: str) -> str:
    return "h" + hashlib.blake2b(numbers + text.encode(), digest_size=10).hexdigest()


def _key_numbers(values: pd.Series) -> np.ndarray:
    """float64 values of a typed column; months as year * 12 + month; missing as NaN."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        moments = pd.DatetimeIndex(values)
        return np.where(
            moments.isna(), np.nan, moments.year.to_numpy() * 12.0 + moments.month.to_numpy()
        )
    return values.to_numpy(dtype="float64", na_value=np.nan)


def refine(raw: pd.DataFrame, profile: Profile, *, applications: bool = False) -> RefineResult:
    """Parse, validate and label raw rows; rows with any problem become rejects.

    With ``applications=True`` the rows are new applications (scoring): only the columns
    scoring reads are parsed and checked (``Profile.reads``: not the target, outcome or
    protected columns a file may also hold), and a row without an id gets a key derived
    from its content.
    """
    mapping = check_columns(list(map(str, raw.columns)), profile, applications=applications)
    by_name = {name: raw_name for raw_name, name in mapping.items()}
    problems: list[pd.DataFrame] = []
    typed: dict[str, pd.Series] = {}

    for name, spec in profile.columns.items():
        if name not in by_name:
            continue
        values, bad = parse_column(raw[by_name[name]], spec)
        typed[name] = values
        if spec.required:
            missing = values.isna() & ~values.index.isin(bad.index)
            bad = pd.concat([bad, pd.Series("required value is missing", index=raw.index[missing])])
        if len(bad):
            problems.append(pd.DataFrame({"column_name": name, "reason": bad.astype(str)}))

    loan_id = _loan_ids(raw, typed, profile, by_name, problems, applications=applications)
    label, target_raw = _labels(typed, profile, problems)
    if ROW_PROBLEM in raw.columns:  # the reader's: another field count than the header
        shifted = raw.index[raw[ROW_PROBLEM].notna().to_numpy()]
        if len(shifted):  # its fields are out of place: the one problem is the row's
            problems[:] = [p.loc[~p.index.isin(shifted)] for p in problems]
            problems.append(
                pd.DataFrame(
                    {"column_name": "(row)", "reason": raw.loc[shifted, ROW_PROBLEM].astype(str)}
                )
            )

    columns = {
        LOAN_ID: loan_id,
        SOURCE_ROW: pd.Series(raw.index.astype("int64"), index=raw.index),
        VINTAGE: typed[profile.vintage]
        if profile.vintage in typed
        else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"),
        LABEL: label,
        TARGET_RAW: target_raw,
    }
    for name in profile.silver_columns:
        columns[name] = (
            typed[name] if name in typed else _empty(profile.columns[name].parser, raw.index)
        )
    rejects = _collect(problems, loan_id)
    # Built at once, positionally (every column is indexed like ``raw``), then only the
    # valid rows taken: inserting column by column and copying again cost more than parsing
    # some of the columns.
    silver = pd.DataFrame({n: _aligned(v, raw.index).array for n, v in columns.items()})
    if len(rejects):
        silver = silver.take(np.flatnonzero(~raw.index.isin(rejects[SOURCE_ROW])))
        silver.index = pd.RangeIndex(len(silver))
    found = pd.concat(problems, ignore_index=True) if problems else _no_problems()
    return RefineResult(silver=silver, rejects=rejects, problems=found)


def _aligned(values: pd.Series, index: pd.Index) -> pd.Series:
    return values if values.index.equals(index) else values.reindex(index)


def drop_duplicate_ids(silver: pd.DataFrame, seen: set[str] | frozenset[str]) -> RefineResult:
    """Keep the first row of each loan id; later rows (here or already ``seen``) are rejected."""
    ids = silver[LOAN_ID]
    known = np.fromiter((k in seen for k in ids), dtype=bool, count=len(ids))
    repeated = ids.duplicated(keep="first") | known
    dupes = silver.loc[repeated, [SOURCE_ROW, LOAN_ID]].copy()
    dupes["column_name"] = LOAN_ID
    dupes["reason"] = "duplicate loan id: an earlier row of this file has the same id"
    return RefineResult(
        silver=silver.loc[~repeated].reset_index(drop=True),
        rejects=dupes[REJECT_COLUMNS].reset_index(drop=True),
    )


def _loan_ids(
    raw: pd.DataFrame,
    typed: dict[str, pd.Series],
    profile: Profile,
    by_name: dict[str, str],
    problems: list[pd.DataFrame],
    *,
    applications: bool,
) -> pd.Series:
    id_column = profile.id.column
    if id_column is not None and id_column in by_name:
        # Parquet and spreadsheets turn 1077501 into '1077501.0'; keep ids stable.
        text = pc.replace_substring_regex(
            clean_arrow(raw[by_name[id_column]]), r"^(\d+)\.0+$", r"\1"
        )
        missing = pd.Series(text.is_null().to_numpy(zero_copy_only=False), index=raw.index)
        # An id holding a NUL is refused where the column is parsed, one too long to index
        # here; what the reject row keeps as its id must still be storable.
        nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
        ids = _as_object(pc.if_else(nul, pa.scalar(None, pa.string()), text), raw.index)
        long = pc.fill_null(pc.greater(pc.utf8_length(text), ID_MAX_CHARS), False)
        long = long.to_numpy(zero_copy_only=False) & ~nul.to_numpy(zero_copy_only=False)
        if long.any():
            problems.append(
                pd.DataFrame(
                    {"column_name": id_column, "reason": [id_problem(i) for i in ids[long]]},
                    index=raw.index[long],
                )
            )
            ids[long] = None
        if applications:
            if missing.any():
                rows = missing.to_numpy()
                needing = {name: values[rows] for name, values in typed.items()}
                ids[missing] = application_keys(needing, profile, raw.index[rows])
            return ids
        if missing.any():
            problems.append(
                pd.DataFrame(
                    {"column_name": id_column, "reason": "the loan id is missing"},
                    index=raw.index[missing],
                )
            )
        return ids
    return application_keys(typed, profile, raw.index)


def _labels(
    typed: dict[str, pd.Series], profile: Profile, problems: list[pd.DataFrame]
) -> tuple[pd.Series, pd.Series]:
    target = profile.target.column
    if target not in typed:
        index = next(iter(typed.values())).index
        return pd.Series(pd.NA, index=index, dtype="Int64"), pd.Series(
            None, index=index, dtype=object
        )
    raw_values = typed[target]
    tokens = pc.utf8_lower(
        pc.replace_substring_regex(pa.array(raw_values, pa.string()), r"\s+", " ")
    )
    kinds = _as_object(tokens, raw_values.index).map(profile.target.mapping())
    unknown_value = raw_values.notna() & kinds.isna()
    if unknown_value.any():
        expected = len(profile.target.bad) + len(profile.target.good) + len(profile.target.unknown)
        problems.append(
            pd.DataFrame(
                {
                    "column_name": target,
                    "reason": raw_values[unknown_value].map(
                        lambda v: (
                            f"{v!r} is not one of the {expected} values the profile "
                            "lists as bad, good or unknown"
                        )
                    ),
                }
            )
        )
    if horizon_applies(profile, typed):
        return horizon_labels(kinds, typed, profile), raw_values
    label = kinds.map(_LABEL_VALUE).astype("Int64")
    return label, raw_values


def horizon_applies(profile: Profile, typed: dict[str, pd.Series]) -> bool:
    """Whether rows can be labelled over the profile's performance window: it has one,
    and the file holds the issue month and the column that dates the default event (else
    the final status is the label)."""
    dated = profile.target.default_date
    return (
        profile.target.horizon_months is not None
        and dated is not None
        and profile.vintage in typed
        and dated.column in typed
    )


def horizon_labels(kinds: pd.Series, typed: dict[str, pd.Series], profile: Profile) -> pd.Series:
    """Labels over the profile's performance window of ``horizon_months`` from issue.

    Only loans whose whole window lies before the extract are labelled (the vintage has
    matured); the others are censored (NA), bad ones included, so that a recent vintage
    is not labelled by its early defaults alone. The extract month is the latest payment
    month among the rows. A matured loan is bad (1) if its default event falls within
    the window, else good (0): repaid, defaulted later, or still paying. The default
    event is dated ``default_date.lag_months`` after the last payment (after issue when
    nothing was paid) for loans with a bad status and for loans still open (an open loan
    whose projected default falls in a window that has passed is late beyond recovery).
    """
    target = profile.target
    assert target.horizon_months is not None and target.default_date is not None
    horizon = target.horizon_months
    issued = _month_number(typed[str(profile.vintage)])
    paid = _month_number(typed[target.default_date.column])
    extract = paid.max()
    default_at = (paid - issued).fillna(0) + target.default_date.lag_months
    defaulted = (kinds == Label.BAD) | ((kinds == Label.UNKNOWN) & (default_at <= horizon))
    matured = (issued + horizon <= extract) & kinds.notna()
    label = (defaulted & (default_at <= horizon)).astype("Int64")
    return label.mask(~matured.astype(bool))  # censored: NA


def _month_number(values: pd.Series) -> pd.Series:
    """Months since year 0 of month values (NaN where missing)."""
    when = moments(values)
    return (when.dt.year * 12 + when.dt.month).astype("float64")


def _collect(problems: list[pd.DataFrame], loan_id: pd.Series) -> pd.DataFrame:
    if not problems:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REJECT_COLUMNS}).astype(
            {SOURCE_ROW: "int64"}
        )
    every = pd.concat(problems)
    every["text"] = every["column_name"] + ": " + every["reason"]
    grouped = every.groupby(level=0, sort=True)
    rejects = pd.DataFrame(
        {
            "column_name": grouped["column_name"].first(),
            "reason": grouped["text"].agg("; ".join),
        }
    )
    rejects[SOURCE_ROW] = rejects.index.astype("int64")
    rejects[LOAN_ID] = loan_id.reindex(rejects.index)
    return rejects[REJECT_COLUMNS].reset_index(drop=True)


def _no_problems() -> pd.DataFrame:
    return pd.DataFrame({"column_name": [], "reason": []}, dtype=object)


def _empty(parser: Parser, index: pd.Index) -> pd.Series:
    if parser is Parser.MONTH:
        return pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")
    if parser in (Parser.INTEGER, Parser.TERM_MONTHS, Parser.EMP_LENGTH):
        return pd.Series(pd.NA, index=index, dtype="Int64")
    if parser in (Parser.NUMBER, Parser.PERCENT):
        return pd.Series(float("nan"), index=index, dtype="float64")
    return pd.Series(None, index=index, dtype=object)


__all__ = [
    "REJECT_COLUMNS",
    "RefineResult",
    "application_keys",
    "check_columns",
    "drop_duplicate_ids",
    "map_headers",
    "refine",
]


def _as_object(values: pa.Array, index: pd.Index) -> pd.Series:
    """An Arrow string array as an object Series with ``None`` for nulls."""
    return pd.Series(values.to_numpy(zero_copy_only=False), index=index, dtype=object)
