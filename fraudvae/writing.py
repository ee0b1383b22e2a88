"""Writing files and directories atomically, with the usual permissions, never over what a command
did not write itself (`check_output_directory`), and a file's digest."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fraudvae.errors import DataError

_LIVE: set[Path] = set()  # temporary files and directories being written now


def remove_temporaries() -> None:
    """Remove every temporary file or directory this process is writing (for a signal handler that
    ends the process at once, when no `finally` will run)."""
    for p in list(_LIVE):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    _LIVE.clear()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    # the writer's pid is in the name, so a later run can tell a dead writer's leftover from a live one
    return f".{path.name}.tmp{os.getpid()}."


def clean_leftovers(path: Path) -> None:
    """Remove temporary siblings of `path` that a killed writer left (SIGKILL runs no cleanup); a
    live process's are left alone."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp(\d+)\.")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        m = pattern.match(p.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def check_writable(path: str | Path, given: str | None = None) -> Path:
    """Refuse, before any work, an output path that cannot be a file: a directory, a parent that is
    a file or not writable. Names the path as the user gave it. Returns the resolved path."""
    shown = given if given is not None else str(path)
    p = Path(path).resolve()
    if p.is_dir():
        example = str(Path(shown) / "scores.csv")
        raise DataError(f"--output {shown!r} is a directory: give a file name, such as {example!r}")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"--output {shown!r} cannot be written: {str(parent)!r} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"--output {shown!r} cannot be written: no permission to write in {str(parent)!r}")
    return p


@dataclass(frozen=True)
class OutputDirectory:
    """A kind of directory a command writes whole: its main document and every file it may hold. A
    directory that holds anything else is not an earlier output of this kind, and is never replaced."""

    what: str  # "an evaluation report", "a model directory"
    document: str  # the file that marks it: metrics.json, manifest.json, ...
    files: frozenset[str]
    folder: str = "output"  # a name to suggest for a new folder: "report", "model"


def check_output_directory(path: str | Path, kind: OutputDirectory, option: str, *,
                           reading: Collection[str | Path] = ()) -> Path:
    """Refuse, before any work, a directory output that would destroy something: a path that is a
    file, one of the paths being read (`reading`: the model, the data) or a folder holding them, or
    a folder holding anything that is not an earlier output of the same kind. An empty folder, a new
    path and the command's own earlier output are fine. Returns the resolved path."""
    shown = str(path)
    p = Path(path).resolve()
    fix = f"give a new folder (such as {str(Path(shown) / kind.folder)!r}) or an earlier output of the same command"
    for r in reading:
        r = Path(r).resolve()
        if p == r or p in r.parents:
            what = "is" if p == r else "holds"
            raise DataError(f"{option} {shown!r} {what} {str(r)!r}, which this command reads: writing there would "
                            f"replace it. {fix[0].upper() + fix[1:]}")
    if p.exists() and not p.is_dir():
        raise DataError(f"{option} {shown!r} is a file, not a directory: {fix}. The file is left as it is")
    if p.is_dir():
        try:
            entries = list(p.iterdir())
        except OSError as e:
            raise DataError(f"{option} {shown!r} cannot be read: {e.strerror or e}") from None
        foreign = sorted(e.name + ("/" if e.is_dir() else "") for e in entries
                         if e.name not in kind.files or e.is_dir() or e.is_symlink())
        if entries and (foreign or not (p / kind.document).is_file()):
            named = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "") \
                if foreign else f"no {kind.document}"
            raise DataError(f"{option} {shown!r} is a folder that is not {kind.what} ({named}): it would be "
                            f"replaced whole, so nothing is written and nothing deleted. {fix[0].upper() + fix[1:]}")
    return p


@contextmanager
def atomic_directory(path: str | Path, kind: OutputDirectory) -> Iterator[Path]:
    """A fresh temporary sibling of `path` to fill. When the block ends normally it takes `path`'s
    place (an earlier output of the same `kind` there is swapped out, then removed); when it raises,
    it is removed and `path` is untouched. A crash never leaves a half-written directory at `path`.
    A `path` that is a file or a folder holding anything else is refused first
    (`check_output_directory`). Files get the usual permissions (0644 under umask 022), whatever the
    library that wrote them chose. An I/O failure names `path` as given."""
    shown = str(path)
    path = check_output_directory(path, kind, "output")
    with _named(shown):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
    _LIVE.add(tmp)
    try:
        yield tmp
        with _named(shown):
            mask = _umask()
            for p in tmp.rglob("*"):
                os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
            os.chmod(tmp, 0o777 & ~mask)
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path) + "old.", dir=path.parent))
                os.rename(path, old / "d")
            os.rename(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _LIVE.discard(tmp)


@contextmanager
def _named(shown: str) -> Iterator[None]:
    """An I/O failure while writing `shown` (through a temporary sibling) as a `DataError` naming the
    path as the user gave it, never the temporary's name."""
    try:
        yield
    except OSError as e:
        raise DataError(f"cannot write {shown!r}: {e.strerror or e}") from None


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write; it becomes `path` (mode 0666 less the umask) when the
    block ends normally and is removed when it raises, so readers never see a half-written file. An
    I/O failure names `path` as given."""
    shown = str(path)
    path = Path(path).resolve()
    with _named(shown):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
        os.close(fd)
    tmp = Path(name)
    _LIVE.add(tmp)
    try:
        try:
            yield tmp
        except OSError as e:
            if e.filename is not None and Path(e.filename) == tmp:
                raise DataError(f"cannot write {shown!r}: {e.strerror or e}") from None
            raise
        with _named(shown):
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _LIVE.discard(tmp)


def refuse_inside(path: str | Path, folder: str | Path, option: str, what: str) -> None:
    """Refuse an output file inside `folder` (a model directory being read): writing there would
    change or break it."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    if p == f or f in p.parents:
        raise DataError(f"{option} {str(path)!r} is inside {what} {str(folder)!r}: writing there would change or "
                        f"break it. Write the output elsewhere")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read a block at a time: a data file is never held whole."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
