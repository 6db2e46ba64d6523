"""Load realised outcomes from a file (e.g. a later extract in which loans have matured)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loanrisk.config import Settings
from loanrisk.constants import Label
from loanrisk.data.parsers import clean_text
from loanrisk.data.readers import describe, expand_sources, read_chunks, read_header
from loanrisk.errors import InputFileError
from loanrisk.profiles.model import normalise_header, normalise_token
from loanrisk.warehouse.bulk import write_frame
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.schema import outcomes, predictions


@dataclass
class OutcomeLoad:
    """How the file's rows matched predictions."""

    source: str
    rows: int = 0
    matched: int = 0
    unmatched: int = 0
    not_final: int = 0  # status still unknown (Current, ...): nothing to record yet
    stored: int = 0
    refused: int = 0  # rows holding a value no warehouse can store (a NUL character)
    problems: list[str] = field(default_factory=list)  # the first few refusals, by row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_outcomes(settings: Settings, warehouse: Warehouse, source: str) -> OutcomeLoad:
    """Match rows to predictions by loan id (or client_id) and store their outcomes.

    The outcome comes from a ``defaulted`` column (1/0, true/false) or from the profile's
    target column (``loan_status``: bad -> 1, good -> 0, unknown -> not stored yet).
    """
    timeout = settings.ingest.source_timeout_seconds
    files = expand_sources([source], timeout=timeout)
    profile = warehouse.profile
    result = OutcomeLoad(source=", ".join(files))
    for url in files:
        describe(url, timeout=timeout)
        names = read_header(url, timeout=timeout)
        header = {normalise_header(h): h for h in names}
        used = {profile.id.column or "", "loan_id", "client_id", "defaulted"}
        _one_of_each(url, names, {normalise_header(n) for n in used | {profile.target.column}})
        id_column = header.get(profile.id.column or "") or header.get("loan_id")
        client_column = header.get("client_id")
        status_column = header.get("defaulted") or header.get(
            normalise_header(profile.target.column)
        )
        if (id_column is None and client_column is None) or status_column is None:
            raise InputFileError(
                f"{url}: an outcomes file needs '{profile.id.column}' (or 'loan_id' or "
                f"'client_id') and 'defaulted' or '{profile.target.column}'; found "
                f"{', '.join(list(header.values())[:12])}"
            )
        mapping = profile.target.mapping()
        with warehouse.engine.begin() as conn:
            for chunk in read_chunks(url, chunk_size=settings.ingest.chunk_size, timeout=timeout):
                _load_chunk(conn, chunk, id_column, client_column, status_column, mapping, result)
    return result


def _load_chunk(
    conn: sa.Connection,
    chunk: pd.DataFrame,
    id_column: str | None,
    client_column: str | None,
    status_column: str,
    mapping: dict[str, Label],
    result: OutcomeLoad,
) -> None:
    result.rows += len(chunk)
    chunk = _without_unstorable(
        chunk, [c for c in (id_column, client_column, status_column) if c], result
    )
    status = clean_text(chunk[status_column])
    lowered = status.map(lambda v: None if v is None else normalise_token(v))
    defaulted = lowered.map(
        {"1": 1, "true": 1, "yes": 1, "0": 0, "false": 0, "no": 0}
        | {k: (1 if v is Label.BAD else 0) for k, v in mapping.items() if v is not Label.UNKNOWN}
    )
    loan_ids = (
        clean_text(chunk[id_column]).str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
        if id_column
        else pd.Series(None, index=chunk.index, dtype=object)
    )
    client_ids = (
        clean_text(chunk[client_column])
        if client_column
        else pd.Series(None, index=chunk.index, dtype=object)
    )
    final = defaulted.notna()
    result.not_final += int((~final).sum())
    frame = pd.DataFrame(
        {
            "prediction_id": None,
            "client_id": client_ids[final],
            "loan_id": loan_ids[final],
            "defaulted": defaulted[final].astype(int),
            "observed_at": None,
            "source": "file",
        }
    )
    known = _known(conn, frame["loan_id"].dropna().tolist(), predictions.c.loan_id) | _known(
        conn, frame["client_id"].dropna().tolist(), predictions.c.client_id
    )
    matched = frame["loan_id"].isin(known) | frame["client_id"].isin(known)
    result.matched += int(matched.sum())
    result.unmatched += int((~matched).sum())
    if len(frame):
        write_frame(conn, outcomes, frame.drop(columns=["observed_at"]))
        result.stored += len(frame)


def _one_of_each(url: str, names: list[str], used: set[str]) -> None:
    """Refuse a header naming a column this load reads twice (in any spelling): which of
    the two holds the value is anybody's guess. Other columns may repeat."""
    seen: dict[str, int] = {}
    for at, name in enumerate(names):
        key = normalise_header(name)
        if key in used and (first := seen.setdefault(key, at)) != at:
            raise InputFileError(
                f"{url}: columns {first + 1} ({names[first]!r}) and {at + 1} ({name!r}) "
                "read as one; keep one of them"
            )


_SHOWN = 5  # refusals named in the result; the rest are counted


def _without_unstorable(
    chunk: pd.DataFrame, columns: list[str], result: OutcomeLoad
) -> pd.DataFrame:
    """The chunk without rows whose id, client id or status holds a NUL character (a damaged
    export; PostgreSQL text cannot hold one), each refusal counted and the first named."""
    bad = pd.Series(False, index=chunk.index)
    for column in columns:
        text = chunk[column].astype("string")
        nul = text.str.contains("\x00", regex=False, na=False).astype(bool)
        for row in chunk.index[nul & ~bad][: max(_SHOWN - len(result.problems), 0)]:
            result.problems.append(f"row {row}: {column}: {text[row]!r} contains a NUL character")
        bad |= nul
    result.refused += int(bad.sum())
    return chunk.loc[~bad] if bad.any() else chunk


def _known(conn: sa.Connection, values: list[str], column: sa.Column[Any]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), 5_000):
        batch = values[start : start + 5_000]
        found |= {r[0] for r in conn.execute(sa.select(column).where(column.in_(batch)))}
    return found
