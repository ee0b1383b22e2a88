"""Files: reading tables (CSV in any common delimiter, or Parquet by extension) with errors a user
can act on (writing them is `fraudvae.writing`).

A frame read from a CSV file is indexed by the file's line numbers (the header is line 1, the
first row line 2, as an editor shows them; the index is named "line"), so every error about a
value names the line to look at. Parquet rows are numbered from 0 (index named "row").
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fraudvae.errors import DataError

CHUNK_ROWS = 50_000
DELIMITERS = (",", ";", "\t", "|")
SNIFF_BYTES = 1 << 16
NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written: its delimiter (given or detected) and text encoding."""

    sep: str = ","
    encoding: str = "utf-8-sig"  # UTF-8, with or without a byte-order mark
    detected: bool = False

    def describe(self) -> str:
        how = "detected" if self.detected else "given"
        return f"delimiter {self.sep!r} ({NAMES.get(self.sep, 'custom')}, {how}), encoding {self.encoding}"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"file not found: {str(path)!r}")
    if not path.is_file():
        raise DataError(f"not a file: {str(path)!r}")
    if path.stat().st_size == 0:
        raise DataError(f"file is empty: {str(path)!r}")


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".parquet", ".pq")


def _not_utf8(path: Path, e: UnicodeDecodeError, encoding: str) -> DataError:
    return DataError(f"cannot read {str(path)!r} as {encoding}: byte 0x{e.object[e.start]:02x} at offset {e.start} "
                     f"is not valid text in it. A Latin-1 or Windows-1252 export (common from Excel) reads with "
                     f"--encoding cp1252; otherwise pass the file's encoding with --encoding")


def csv_format(path: str | Path, sep: str | None = None, encoding: str | None = None) -> CsvFormat:
    """The file's delimiter (`sep`, else detected among , ; tab | from its first lines: the one that
    splits every line into the same number of fields, more than one) and encoding (default UTF-8)."""
    path = Path(path)
    encoding = encoding or "utf-8-sig"
    if sep is not None:
        sep = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(sep, sep)
        if len(sep) != 1:
            raise DataError(f"--sep {sep!r}: the delimiter must be one character (or \\t / tab)")
        return CsvFormat(sep, encoding, detected=False)
    _check_file(path)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not merely a character cut in two at the end of the sample
            raise _not_utf8(path, e, encoding) from None
        text = head[: e.start].decode(encoding)
    except LookupError:
        raise DataError(f"--encoding {encoding!r} is not an encoding Python knows (try utf-8 or cp1252)") from None
    lines = text.splitlines()
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut short
    lines = lines[:50]
    best, most = ",", 1
    for cand in DELIMITERS:
        try:
            counts = {len(row) for row in csv.reader(lines, delimiter=cand) if row}
        except csv.Error:
            continue
        if len(counts) == 1 and (n := counts.pop()) > most:
            best, most = cand, n
    return CsvFormat(best, encoding, detected=True)


def _nested(path: Path, columns: Collection[str] | None,
            skip: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """(columns to read, nested columns left out) of a Parquet file: `columns` (all when None), less
    the nested columns named in `skip`. A nested column that is read is refused, naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    read, skipped = [], []
    for field in pq.read_schema(path):
        nested = pa.types.is_nested(field.type)
        if (columns is not None and field.name not in columns) or (nested and field.name in skip):
            if nested:
                skipped.append(field.name)
            continue
        if nested:
            kind = "list" if pa.types.is_list(field.type) or pa.types.is_large_list(field.type) else \
                "struct" if pa.types.is_struct(field.type) else "nested"
            raise DataError(f"column {field.name!r} of {str(path)!r} holds {kind} values ({field.type}): fraudvae "
                            f"reads flat columns (numbers, text, booleans, date-times). Flatten it into columns of "
                            f"its own, or leave it out with --drop {field.name}", column=field.name)
        read.append(field.name)
    return read, skipped


def _header(path: Path, fmt: CsvFormat | None) -> list[str]:
    """The column names as the file writes them (before pandas renames a repeated one)."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    fmt = fmt or csv_format(path)
    with open(path, newline="", encoding=fmt.encoding, errors="replace") as fh:
        return next(csv.reader(fh, delimiter=fmt.sep), [])


def check_unique_columns(path: Path, fmt: CsvFormat | None) -> None:
    """Refuse a file whose header names a column twice (pandas would read the second as `name.1`, a
    column that is not in the file, and a reader of the name would silently take the first)."""
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(_header(path, fmt), start=1):
        seen.setdefault(name.strip(), []).append(i)
    for name, at in seen.items():
        if len(at) > 1:
            raise DataError(f"{str(path)!r} names column {name!r} {len(at)} times (columns "
                            f"{', '.join(map(str, at))} of its header): a value would be read from one of them "
                            f"silently. Rename or remove the repeated column", column=name)


def _as_text(columns: Collection[str]) -> dict[str, type] | None:
    return {c: str for c in columns} or None


def read_table(path: str | Path, fmt: CsvFormat | None = None, skip: Collection[str] = (),
               text: Collection[str] = ()) -> pd.DataFrame:
    """The whole file as a frame (see the module docstring for its index). Parquet columns named in
    `skip` are not read; CSV columns named in `text` are read as written (an id "000123" stays
    text). Raises `DataError` for a missing, empty or unreadable file, or one naming a column twice."""
    path = Path(path)
    _check_file(path)
    with _read_errors(path, fmt):
        check_unique_columns(path, fmt)
        if is_parquet(path):
            read, skipped = _nested(path, None, skip)
            df = pd.read_parquet(path, columns=read)
            df.index = pd.RangeIndex(len(df), name="row")
            df.attrs["skipped"] = skipped  # nested columns left out on request (never read, so never "dropped")
        else:
            fmt = fmt or csv_format(path)
            df = pd.read_csv(path, sep=fmt.sep, encoding=fmt.encoding, dtype=_as_text(text))
            df.index = pd.RangeIndex(2, 2 + len(df), name="line")
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError(f"file has no data rows: {str(path)!r}")
    return df


def iter_table(path: str | Path, chunk_rows: int = CHUNK_ROWS, fmt: CsvFormat | None = None,
               columns: Collection[str] | None = None, text: Collection[str] = ()) -> Iterator[pd.DataFrame]:
    """The file in chunks of at most `chunk_rows` rows; each chunk's index continues the previous
    one's (line numbers for CSV). For Parquet, only `columns` are read when given (a nested column
    the caller does not need is no error). CSV columns named in `text` are read as written."""
    path = Path(path)
    _check_file(path)
    with _read_errors(path, fmt):
        check_unique_columns(path, fmt)
        if is_parquet(path):
            import pyarrow.parquet as pq

            read, _ = _nested(path, columns)
            start = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=read):
                df = batch.to_pandas()
                df.index = pd.RangeIndex(start, start + len(df), name="row")
                start += len(df)
                yield df
            return
        fmt = fmt or csv_format(path)
        reader = pd.read_csv(path, sep=fmt.sep, encoding=fmt.encoding, chunksize=chunk_rows, dtype=_as_text(text))
        first, start = True, 2
        for df in reader:
            if first and df.shape[1] == 0:
                raise DataError(f"file has no columns: {str(path)!r}")
            first = False
            df.index = pd.RangeIndex(start, start + len(df), name="line")
            start += len(df)
            yield df
        if first:
            raise DataError(f"file has no data rows: {str(path)!r}")


@contextmanager
def _read_errors(path: Path, fmt: CsvFormat | None) -> Iterator[None]:
    """What reading a file can raise, as a `DataError` naming the file (and, for text that is not in
    the expected encoding, the option that fixes it). `fmt` is the format the caller gave: a detected
    one has the same encoding (the default's, when none was given)."""
    try:
        yield
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e, (fmt or CsvFormat()).encoding) from None
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read {str(path)!r}: {str(e).splitlines()[0]}") from None
