"""Files: reading tables (CSV, or Parquet by extension) with errors a user can act on, and
writing directories atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from fraudvae.errors import DataError

CHUNK_ROWS = 50_000


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"file not found: {str(path)!r}")
    if not path.is_file():
        raise DataError(f"not a file: {str(path)!r}")
    if path.stat().st_size == 0:
        raise DataError(f"file is empty: {str(path)!r}")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def read_table(path: str | Path) -> pd.DataFrame:
    """The whole file as a frame. Raises `DataError` for a missing, empty or unreadable file."""
    path = Path(path)
    _check_file(path)
    try:
        df = pd.read_parquet(path) if _is_parquet(path) else pd.read_csv(path, encoding="utf-8-sig")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read {str(path)!r}: {str(e).splitlines()[0]}") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError(f"file has no data rows: {str(path)!r}")
    return df


def iter_table(path: str | Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The file in chunks of at most `chunk_rows` rows; each chunk's index continues the previous
    one's, so row numbers in error messages count from the start of the file (0 = first data row)."""
    path = Path(path)
    _check_file(path)
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            start = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                df = batch.to_pandas()
                df.index = pd.RangeIndex(start, start + len(df))
                start += len(df)
                yield df
            return
        reader = pd.read_csv(path, encoding="utf-8-sig", chunksize=chunk_rows)
        first = True
        for df in reader:
            if first and df.shape[1] == 0:
                raise DataError(f"file has no columns: {str(path)!r}")
            first = False
            yield df
        if first:
            raise DataError(f"file has no data rows: {str(path)!r}")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read {str(path)!r}: {str(e).splitlines()[0]}") from None


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A fresh temporary sibling of `path` to fill. When the block ends normally it takes `path`'s
    place (an existing directory there is swapped out, then removed); when it raises, it is removed
    and `path` is untouched. A crash never leaves a half-written directory at `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.rename(path, old / "d")
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write; it becomes `path` when the block ends normally and is
    removed when it raises, so readers never see a half-written file."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
