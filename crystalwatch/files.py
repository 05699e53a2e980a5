"""Writing files without losing what is already there.

Every file crystalwatch writes whole (seed library, audit JSON, report files, summaries, callback state)
goes through :func:`write_atomic`: the bytes go to a temporary file beside the target, are flushed to
disk, and only then replace the target, so an existing file survives a full disk, a crash or a kill.
Append-only files (the JSONL trajectory) go through :func:`append_lines`, which first cuts back a
truncated last line (a crash in the middle of an earlier write) and undoes a partial append.
Any failure is an :class:`OutputError` that names the path and says what to do.
"""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from crystalwatch.errors import CrystalwatchError, CrystalwatchWarning


class OutputError(CrystalwatchError):
    """A file could not be written; the message names it and says how to fix it. Nothing was lost."""


class RepairWarning(CrystalwatchWarning):
    """A file was repaired before writing (a truncated last line cut back)."""


def _reason(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "the disk is full (or a file size limit was hit)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (a read-only place?)"
    if err.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if err.errno == errno.EEXIST:
        return "a part of the path exists and is not a folder"
    if err.errno == errno.EISDIR:
        return "it is a folder"
    return err.strerror or type(err).__name__


def output_error(path: str | Path, err: OSError, what: str = "") -> OutputError:
    """An :class:`OutputError` for ``path`` from an ``OSError`` (also signals such as a file size limit)."""
    what = f" {what}" if what else ""
    return OutputError(f"cannot write{what} {path}: {_reason(err)}; choose another output path or free the space "
                       "(any earlier file there is unchanged)")  # fmt: skip


def ensure_folder(path: str | Path) -> Path:
    """Create ``path`` (a folder) and its parents, or raise :class:`OutputError` saying why not."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot write into {path}: {blocker} is a file, not a folder; choose another output path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(path, err, "into") from None
    return path


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` all or nothing: a temporary file beside it, flushed, then renamed over it."""
    path = Path(path)
    ensure_folder(path.parent)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise output_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # keep the old file's permission bits
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise output_error(path, err) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def repair_tail(path: str | Path) -> int:
    """Cut a truncated last line (no final newline) off ``path``; return the number of bytes removed.

    A crash in the middle of an append leaves such a line; appending after it would glue the new
    records onto it and make the file unreadable.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        keep, block = 0, 1 << 16
        pos = size
        while pos > 0:  # find the last newline, reading backwards
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        f.truncate(keep)
    removed = size - keep
    warnings.warn(f"{path}: cut back a truncated last line ({removed} bytes, left by an interrupted write) "
                  "before appending", RepairWarning, stacklevel=3)  # fmt: skip
    return removed


def append_lines(path: str | Path, lines: Sequence[str]) -> None:
    """Append whole lines to ``path``: a truncated tail is cut first, and a failed append is undone."""
    if not lines:
        return
    path = Path(path)
    ensure_folder(path.parent)
    try:
        repair_tail(path)
        size = path.stat().st_size if path.exists() else 0
    except OSError as err:
        raise output_error(path, err) from None
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as err:
        raise output_error(path, err) from None
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:
        os.ftruncate(fd, size)  # leave the file as it was: whole records only
        raise output_error(path, err) from None
    except BaseException:
        os.ftruncate(fd, size)
        raise
    finally:
        os.close(fd)
