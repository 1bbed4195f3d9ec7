"""One owner at a time: an exclusive lock on a file that names the process holding it.

A collection owns each task it collects, and a `train` run owns its output directory, for their
whole duration, so a second command on the same data refuses to start instead of interleaving
its writes with the first one's. The lock is an advisory `flock`: the kernel releases it when
its process dies (even by SIGKILL), so a crashed owner never blocks the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ray_macaw.errors import RayMacawError


class OwnedError(RayMacawError, RuntimeError):
    """Another running process owns the task or directory."""


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
    }


def describe_holder(text: str) -> str:
    """'pid 123 on host h since T (ray-macaw collect ...)' from a lock file's contents."""
    try:
        doc = json.loads(text)
        return (
            f"pid {doc['pid']} on host {doc['host']} since {doc['since']} "
            f"({doc['command'] or 'unknown command'})"
        )
    except (json.JSONDecodeError, KeyError, TypeError):
        return "another process"


class OwnerLock:
    """An exclusive lock on `path`, taken without waiting; the file records the holder.

    Args:
        path: The lock file (created if needed).
        what: What is owned, for the error ("task 3 of ROOT/point-robot").
        fix: What to do when someone else owns it.

    Raises:
        OwnedError: Another process holds the lock; the message names it.
    """

    def __init__(self, path: Path, what: str, fix: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(path, "a+")  # held until release
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = describe_holder(self._file.read())
            self._file.close()
            self._file = None
            raise OwnedError(
                f"{what} is in use by a running command: {holder}", fix, path
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(_holder()))
        self._file.flush()

    def release(self) -> None:
        """Give up ownership (also happens when the process exits)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@contextlib.contextmanager
def owning(locks: Iterable[tuple[Path, str, str]]) -> Iterator[None]:
    """Hold every `(path, what, fix)` lock for the block; all or none (a refusal releases the
    ones already taken)."""
    held: list[OwnerLock] = []
    try:
        for path, what, fix in locks:
            held.append(OwnerLock(path, what, fix))
        yield
    finally:
        for lock in reversed(held):
            lock.release()
