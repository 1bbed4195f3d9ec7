"""Atomic file writes: a file is either absent or complete, never half written."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ray_macaw.data.storage import ObjectPath
from ray_macaw.errors import DataError


def atomic_write_bytes(path: Path | ObjectPath, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename.

    A crash leaves either the previous file or the new one, never a truncated file under the
    final name; `os.replace` is atomic on POSIX filesystems. On object storage an object
    appears only once its upload completes, so it is written under its final key directly.

    Raises:
        DataError: The disk is full, read-only or not writable; the previous file is untouched.
    """
    if isinstance(path, ObjectPath):
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DataError(
            f"could not write {path.name}: {e.strerror or e}",
            "free disk space or fix the directory's permissions, then re-run; files written "
            "before this one are intact",
            path,
        ) from e


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed) for the block's duration.

    Serialises read-modify-write of a manifest between processes sharing a filesystem.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
