"""Writing what a command produces (-o, --out): all of it, or nothing but one line naming the flag."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from .errors import FlagError, printable


def make_dirs(path: Path, flag: str) -> None:
    """mkdir -p, or a FlagError naming `flag` (whose value `path` is, or is under) that leaves none of the
    directories it made."""
    try:
        _make_dirs(path)
    except OSError as exc:
        raise FlagError(
            printable(f"{flag}: cannot create {path} ({_why(exc)}); give {flag} a directory you can write")
        ) from None


def atomic_write(path: Path, text: str, flag: str) -> None:
    """Write through a temporary file renamed over `path`, so a reader never sees half of it; or a
    FlagError naming `flag` that leaves neither the temporary file nor a directory made for it."""
    created: list[Path] = []
    tmp = path.with_name(f".{path.name}.tmp") if path.name else path
    try:
        if path.is_dir():
            raise FlagError(printable(f"{flag} {path}: is a directory; give the path of a file"))
        created = _make_dirs(path.parent)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _remove(created)
        # The temporary file is ours: a failure to write it is its directory's.
        why = _why(exc, path.parent if exc.filename == str(tmp) else None)
        raise FlagError(
            printable(f"{flag} {path}: cannot write it ({why}); give a file in a directory you can write")
        ) from None


def _make_dirs(path: Path) -> list[Path]:
    """The directories made for `path`, outermost first; on failure none is left."""
    created: list[Path] = []
    try:
        for directory in [*reversed(path.parents), path]:
            if directory.is_dir():
                continue
            if directory.exists():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))
            directory.mkdir()
            created.append(directory)
    except OSError:
        _remove(created)
        raise
    return created


def _remove(created: list[Path]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _why(exc: OSError, where: Path | None = None) -> str:
    """The OS's reason, naming the path it concerns."""
    reason = (exc.strerror or str(exc)).lower()
    named = where or exc.filename
    return f"{named}: {reason}" if named else reason
