"""Stream raw loan files (CSV, CSV.gz, Parquet; local paths or fsspec URLs) as text chunks.

Every value comes out as text (or null), exactly as written in the file, so bronze keeps
the raw truth and the profile's parsers do all the interpretation. Memory stays bounded by
the chunk size whatever the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loanrisk.constants import ROW_PROBLEM
from loanrisk.errors import InputFileError, UnreachableError

SUFFIXES = (".csv", ".csv.gz", ".parquet")
SOURCE_TIMEOUT = 60.0  # seconds without an answer from a remote source before giving up
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class RawFile:
    """One input file: where it is, how big, and the hash of its bytes."""

    url: str
    size: int
    content_hash: str


def _web(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _storage_options(url: str, timeout: float) -> dict[str, Any]:
    """fsspec options for ``url``: a connect and read timeout for web sources (aiohttp
    waits forever by default)."""
    if not _web(url):
        return {}
    import aiohttp

    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(connect=timeout, sock_read=timeout)}}


def _open(url: str, timeout: float) -> Any:
    return fsspec.open(url, "rb", **_storage_options(url, timeout))


@contextlib.contextmanager
def _remote(url: str, timeout: float) -> Iterator[None]:
    """A remote source that fails or does not answer is an outage (retry later), not bad
    input: ``UnreachableError`` (exit code 75) with one line saying what happened."""
    try:
        yield
    except (InputFileError, UnreachableError):
        raise
    except Exception as exc:
        import aiohttp
        from fsspec.exceptions import FSTimeoutError

        # fsspec reports most HTTP failures as FileNotFoundError: look at what caused it.
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, asyncio.TimeoutError | FSTimeoutError):
                raise UnreachableError(f"{url}: no answer within {timeout:g} s") from exc
            if isinstance(cause, aiohttp.ClientResponseError) and cause.status != 404:
                raise UnreachableError(
                    f"{url}: the server answered {cause.status} {cause.message}"
                ) from exc
            if isinstance(cause, aiohttp.ClientConnectionError | ConnectionError):
                raise UnreachableError(f"{url}: cannot reach the server ({cause})") from exc
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, FileNotFoundError):
            raise InputFileError(f"{url}: no such file") from exc
        raise


def expand_sources(sources: list[str], *, timeout: float = SOURCE_TIMEOUT) -> list[str]:
    """Files, globs and folders (local or fsspec URLs) -> a sorted list of file URLs."""
    found: list[str] = []
    for source in sources:
        if _web(source) and not any(ch in source for ch in "*?["):
            found.append(source)  # one file; describe() reads it and says what went wrong
            continue
        with _remote(source, timeout):
            fs, path = fsspec.core.url_to_fs(source, **_storage_options(source, timeout))
        protocol = _protocol_prefix(source)
        if any(ch in path for ch in "*?["):
            matches = sorted(fs.glob(path))
            if not matches:
                raise InputFileError(f"{source}: no file matches this pattern")
        elif fs.isdir(path):
            matches = sorted(p for p in fs.find(path) if p.lower().endswith(SUFFIXES))
            if not matches:
                raise InputFileError(f"{source}: folder holds no {', '.join(SUFFIXES)} file")
        elif fs.exists(path):
            matches = [path]
        else:
            raise InputFileError(f"{source}: no such file or folder")
        found.extend(protocol + m if protocol else m for m in matches)
    return list(dict.fromkeys(found))


def describe(url: str, *, timeout: float = SOURCE_TIMEOUT) -> RawFile:
    """Size and SHA-256 of a file's bytes (one streaming pass)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with _remote(url, timeout), _open(url, timeout) as handle:
            while block := handle.read(4 << 20):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise InputFileError(f"{url}: cannot read the file: {exc}") from exc
    if size == 0:
        raise InputFileError(f"{url}: the file is empty (0 bytes)")
    return RawFile(url=url, size=size, content_hash=digest.hexdigest())


def read_chunks(
    url: str,
    *,
    chunk_size: int,
    encoding: str = "utf-8",
    delimiter: str = ",",
    on_bytes: Callable[[int], None] | None = None,
    timeout: float = SOURCE_TIMEOUT,
) -> Iterator[pd.DataFrame]:
    """Raw rows as frames of Arrow-backed strings, indexed by 1-based source row number."""
    header = read_header(url, encoding=encoding, delimiter=delimiter, timeout=timeout)
    with _remote(url, timeout):
        handle: IO[bytes] = _open(url, timeout).open()
    counted = _CountingReader(handle, on_bytes)
    try:
        head = counted.peek(4)
        form = _CsvForm(gz=head[:2] == _GZIP_MAGIC, encoding=encoding, delimiter=delimiter)
        if head[:4] == _PARQUET_MAGIC:
            batches = _parquet_batches(counted, url, chunk_size)
        else:
            batches = _csv_batches(counted, url, header, form)
        first_row = 1
        tables = _rebatch(batches, chunk_size)
        while True:
            try:
                with _remote(url, timeout):
                    table = next(tables, None)
            except _FieldCountError:
                # A row with more or fewer fields than the header: read the rest with
                # Python's csv module, which numbers rows exactly and keeps such rows
                # (with ROW_PROBLEM set) so they become rejects with the reason.
                handle.close()
                with _remote(url, timeout):
                    handle = _open(url, timeout).open()
                counted = _CountingReader(handle, _Beyond(counted.total, on_bytes))
                batches = _python_csv_batches(counted, url, header, form, skip=first_row - 1)
                tables = _rebatch(batches, chunk_size)
                continue
            if table is None:
                break
            frame = table.to_pandas(types_mapper=pd.ArrowDtype)
            frame.index = pd.RangeIndex(first_row, first_row + len(frame))
            first_row += len(frame)
            yield frame
        if first_row == 1:
            raise InputFileError(f"{url}: the file has a header but no rows")
    finally:
        handle.close()


def read_header(
    url: str, *, encoding: str = "utf-8", delimiter: str = ",", timeout: float = SOURCE_TIMEOUT
) -> list[str]:
    """Column names of a file, without reading its rows."""
    with _remote(url, timeout), _open(url, timeout) as handle:
        counted = _CountingReader(handle, None)
        head = counted.peek(4)
        if head[:4] == _PARQUET_MAGIC:
            try:
                return list(pq.ParquetFile(counted).schema_arrow.names)
            except (pa.ArrowException, OSError) as exc:
                raise InputFileError(f"{url}: not a readable Parquet file: {exc}") from exc
        stream: Any = counted
        if head[:2] == _GZIP_MAGIC:
            stream = pa.CompressedInputStream(pa.PythonFile(counted, mode="r"), "gzip")
        try:
            line = io.TextIOWrapper(stream, encoding=encoding, newline="").readline()
        except (UnicodeDecodeError, pa.ArrowException, OSError, EOFError, zlib.error) as exc:
            raise _unreadable(url, exc, encoding) from exc
        line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark (Excel writes one)
        if not line.strip():
            raise InputFileError(f"{url}: the file is empty (no header line)")
        return next(csv.reader([line], delimiter=delimiter))


DELIMITER_NAMES = {
    "\\t": "\t",
    "tab": "\t",
    "\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
}


def parse_delimiter(text: str) -> str:
    """A one-character delimiter from what a user types: ``,`` ``;`` ``|``, or ``\\t``,
    ``tab`` (a shell passes ``'\\t'`` as two characters)."""
    value = DELIMITER_NAMES.get(text.lower() if len(text) > 1 else text, text)
    if len(value) != 1:
        raise InputFileError(
            f"delimiter {text!r} is not one character; use ',', ';', '|', 'tab' or '\\t'"
        )
    return value


# --------------------------------------------------------------------------- internals


def _protocol_prefix(source: str) -> str:
    if "://" in source:
        return source.split("://", 1)[0] + "://"
    return ""


class _CountingReader(io.RawIOBase):
    """A read-only wrapper that reports bytes read (for a progress bar) and can peek."""

    def __init__(self, inner: IO[bytes], on_bytes: Callable[[int], None] | None) -> None:
        self._inner = inner
        self._on_bytes = on_bytes
        self._peeked = b""
        self.total = 0  # bytes handed out

    def peek(self, size: int) -> bytes:
        if len(self._peeked) < size:
            self._peeked += self._inner.read(size - len(self._peeked))
        return self._peeked[:size]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable() and not self._peeked

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._peeked = b""
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell() - len(self._peeked)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._peeked))
        view[:n] = self._peeked[:n]
        self._peeked = self._peeked[n:]
        if n < len(view):
            data = self._inner.read(len(view) - n)
            view[n : n + len(data)] = data
            n += len(data)
        self.total += n
        if self._on_bytes is not None and n:
            self._on_bytes(n)
        return n


@dataclass(frozen=True)
class _CsvForm:
    """How a CSV file's bytes are written."""

    gz: bool
    encoding: str
    delimiter: str


def _csv_batches(
    handle: _CountingReader, url: str, header: list[str], form: _CsvForm
) -> Iterator[pa.RecordBatch]:
    gz, encoding, delimiter = form.gz, form.encoding, form.delimiter
    stream: Any = pa.PythonFile(handle, mode="r")
    if gz:
        stream = pa.CompressedInputStream(stream, "gzip")
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(encoding=encoding, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
        yield from reader
    except pa.ArrowInvalid as exc:
        text = str(exc).lower()
        if "expected" in text and "columns" in text:
            raise _FieldCountError(str(exc)) from exc
        raise _unreadable(url, exc, encoding) from exc
    except (pa.ArrowException, OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise _unreadable(url, exc, encoding) from exc


class _FieldCountError(Exception):
    """Arrow's CSV reader met a row whose field count is not the header's."""


class _Beyond:
    """Reports only the bytes past ``already`` (a file read again after a restart)."""

    def __init__(self, already: int, on_bytes: Callable[[int], None] | None) -> None:
        self.remaining, self.on_bytes = already, on_bytes

    def __call__(self, n: int) -> None:
        past = max(0, n - self.remaining)
        self.remaining = max(0, self.remaining - n)
        if past and self.on_bytes is not None:
            self.on_bytes(past)


def _python_csv_batches(
    handle: _CountingReader,
    url: str,
    header: list[str],
    form: _CsvForm,
    *,
    skip: int,
    rows_per_batch: int = 10_000,
) -> Iterator[pa.RecordBatch]:
    """Rows after the first ``skip`` (blank lines are not rows, as for Arrow), empty
    fields as nulls; a row with another field count than the header is padded or cut to
    it and carries ROW_PROBLEM saying so."""
    encoding, delimiter = form.encoding, form.delimiter
    stream: Any = gzip.GzipFile(fileobj=handle) if form.gz else handle
    reader = csv.reader(
        io.TextIOWrapper(stream, encoding=encoding, newline=""), delimiter=delimiter
    )
    width = len(header)
    names = [*header, ROW_PROBLEM]
    rows: list[list[str | None]] = []
    try:
        next(reader, None)  # the header
        for fields in reader:
            if not fields:
                continue
            if skip:
                skip -= 1
                continue
            problem = None
            if len(fields) != width:
                shown = delimiter.join(fields)
                problem = (
                    f"the row has {len(fields)} fields, the header {width} (a delimiter or "
                    f"quote inside a value?): {shown[:200]!r}"
                )
                fields = (fields + [""] * width)[:width]
            rows.append([f if f != "" else None for f in fields] + [problem])
            if len(rows) == rows_per_batch:
                yield _string_batch(rows, names)
                rows = []
        if rows:
            yield _string_batch(rows, names)
    except (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise _unreadable(url, exc, encoding) from exc


def _string_batch(rows: list[list[str | None]], names: list[str]) -> pa.RecordBatch:
    columns = [pa.array(list(values), pa.string()) for values in zip(*rows, strict=True)]
    return pa.RecordBatch.from_arrays(columns, names=names)


def _parquet_batches(
    handle: _CountingReader, url: str, chunk_size: int
) -> Iterator[pa.RecordBatch]:
    """Every column as text; a column that has no text form (a list, a struct, bytes that
    are not UTF-8) is refused naming it, whether or not the profile reads it."""
    try:
        parquet = pq.ParquetFile(handle)
        for field in parquet.schema_arrow:
            kind = field.type
            kind = kind.value_type if pa.types.is_dictionary(kind) else kind
            if pa.types.is_nested(kind):
                raise InputFileError(
                    f"{url}: column {field.name!r} holds {kind} values; the columns of a loan "
                    "file hold text, numbers or dates (flatten it, or leave it out)"
                )
        for batch in parquet.iter_batches(batch_size=chunk_size):
            names = batch.schema.names
            yield pa.RecordBatch.from_arrays(
                [
                    _text_of(column, name, url)
                    for column, name in zip(batch.columns, names, strict=True)
                ],
                names=names,
            )
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(f"{url}: not a readable Parquet file: {exc}") from exc


def _text_of(column: pa.Array, name: str, url: str) -> pa.Array:
    try:
        text = as_text(column)
    except pa.ArrowInvalid as exc:  # e.g. bytes that are not UTF-8
        raise InputFileError(f"{url}: column {name!r} has no text form: {exc}") from exc
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return text  # cast from numbers or dates: valid by construction
    try:  # Parquet text must be UTF-8, but not every writer checks
        text.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise InputFileError(
            f"{url}: column {name!r} holds text that is not valid UTF-8 ({exc}); the program "
            "that wrote this Parquet file did not check it"
        ) from exc
    return text


def as_text(column: pa.Array) -> pa.Array:
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def _rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Exactly ``rows`` rows per table (the last one may be shorter)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending)


def _unreadable(url: str, exc: BaseException, encoding: str) -> InputFileError:
    text = str(exc)
    lowered = text.lower()
    if "utf8" in lowered or "utf-8" in lowered or isinstance(exc, UnicodeDecodeError):
        return InputFileError(
            f"{url}: the file holds bytes that are not valid {encoding} text ({text}). "
            "If it was saved as Latin-1 or Windows-1252, pass --encoding latin-1."
        )
    if any(w in lowered for w in ("gzip", "zlib", "compressed")) or isinstance(
        exc, EOFError | zlib.error
    ):
        return InputFileError(f"{url}: the gzip data is truncated or corrupt ({text})")
    if "empty" in lowered:
        return InputFileError(f"{url}: the file is empty")
    return InputFileError(f"{url}: cannot be read as CSV: {text}")
