"""Per-task manifest records: how roots on object storage keep concurrent writers' entries.

A file lock serialises read-modify-write of one `manifest.json` on a local or NFS root. Object
stores have no locks, and two collectors rewriting one object would lose each other's parts. So a
root on object storage keeps, beside `manifest.json` (the family's settings and tasks, written
once when the root is created), one record per task under `_manifest/task_id=<k>.json`, written
only by the command that owns the task; a reader merges the records over `manifest.json`.
Collectors of different tasks never write the same object, and an object store replaces a whole
object at once, so no entry is ever lost or half written.

A local root copied from object storage (or one holding `_manifest/`) is read and written the
same way; other local roots keep everything in `manifest.json`, as before.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray_macaw.data.atomic import atomic_write_bytes
from ray_macaw.data.storage import ObjectPath, StoragePath
from ray_macaw.errors import SchemaError

RECORDS_DIR = "_manifest"  # leading underscore: skipped by pyarrow's dataset discovery
_FIX = "delete it to fall back to manifest.json's entry, or re-collect the task"


def uses_task_records(family_dir: StoragePath) -> bool:
    """Whether a family directory keeps per-task records (always on object storage)."""
    return isinstance(family_dir, ObjectPath) or (family_dir / RECORDS_DIR).is_dir()


def record_path(family_dir: StoragePath, task_id: int) -> StoragePath:
    """Where a task's record lives."""
    return family_dir / RECORDS_DIR / f"task_id={task_id}.json"


def read_records(family_dir: StoragePath) -> list[tuple[StoragePath, dict[str, Any]]]:
    """(path, JSON object) of every task record of a family directory (none without records)."""
    if not uses_task_records(family_dir):
        return []
    return [(path, _parse(path)) for path in (family_dir / RECORDS_DIR).glob("task_id=*.json")]


def _parse(path: StoragePath, attempts: int = 5) -> dict[str, Any]:
    # S3 replaces an object atomically, but some S3-compatible servers (moto's in-memory one)
    # rewrite it in place, so a read racing the owner's update can see a torn record: read again.
    for attempt in range(attempts):
        try:
            doc = json.loads(path.read_text())
            break
        except json.JSONDecodeError as e:
            if attempt + 1 < attempts:
                time.sleep(0.05 * 2**attempt)
                continue
            raise SchemaError(f"task record is not valid JSON ({e.msg})", _FIX, path) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("task_id"), int):
        raise SchemaError("task record must be a JSON object with an integer 'task_id'", _FIX, path)
    return doc


def write_record(family_dir: StoragePath, task_id: int, doc: dict[str, Any]) -> None:
    """Write one task's record whole (a single object put, or a temporary file and a rename)."""
    path = record_path(family_dir, task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(doc, indent=2, sort_keys=True).encode())
