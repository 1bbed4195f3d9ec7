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

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_macaw.data.atomic import atomic_write_bytes
from ray_macaw.data.schema import SCHEMA_VERSION
from ray_macaw.data.storage import ObjectPath
from ray_macaw.errors import SchemaError

if TYPE_CHECKING:
    from ray_macaw.data.manifest import Manifest, TaskRecord

RECORDS_DIR = "_manifest"  # leading underscore: skipped by pyarrow's dataset discovery


def uses_task_records(family_dir: Path | ObjectPath) -> bool:
    """Whether a family directory keeps per-task records (always on object storage)."""
    return isinstance(family_dir, ObjectPath) or (family_dir / RECORDS_DIR).is_dir()


def record_path(family_dir: Path | ObjectPath, task_id: int) -> Path | ObjectPath:
    """Where a task's record lives."""
    return family_dir / RECORDS_DIR / f"task_id={task_id}.json"


def merge_records(manifest: Manifest, family_dir: Path | ObjectPath) -> Manifest:
    """`manifest` with each task's stored record in place of the entry `manifest.json` holds."""
    from ray_macaw.data.manifest import PartRecord, TaskRecord, check_fields, check_version

    if not uses_task_records(family_dir):
        return manifest
    for path in (family_dir / RECORDS_DIR).glob("task_id=*.json"):
        doc = _parse(path)
        check_version(doc, path)
        doc.pop("schema_version")
        try:
            parts = [PartRecord(**p) for p in doc.pop("parts", [])]
            record = TaskRecord(**doc, parts=parts)
        except (TypeError, ValueError) as e:
            raise SchemaError(
                f"task record has missing or unexpected fields ({e})",
                "delete it to fall back to manifest.json's entry, or re-collect the task",
                path,
            ) from e
        manifest.tasks[record.task_id] = record
    check_fields(manifest, family_dir / RECORDS_DIR)
    return manifest


def _parse(path: Path | ObjectPath, attempts: int = 5) -> dict[str, Any]:
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
            raise SchemaError(
                f"task record is not valid JSON ({e.msg})",
                "delete it to fall back to manifest.json's entry, or re-collect the task",
                path,
            ) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("task_id"), int):
        raise SchemaError(
            "task record must be a JSON object with an integer 'task_id'",
            "delete it to fall back to manifest.json's entry, or re-collect the task",
            path,
        )
    return doc


def save_record(family_dir: Path | ObjectPath, record: TaskRecord) -> None:
    """Write one task's record whole (a single object put, or a temporary file and a rename)."""
    doc = {"schema_version": SCHEMA_VERSION, **asdict(record)}
    data = json.dumps(doc, indent=2, sort_keys=True).encode()
    path = record_path(family_dir, record.task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def update_records(
    family_dir: Path | ObjectPath, manifest: Manifest, change: Callable[[Manifest], None]
) -> Manifest:
    """Apply `change` to a merged manifest and write the records of the tasks it changed.

    Raises:
        ValueError: `change` altered the family's settings, which a per-task record cannot hold.
    """
    changed = copy.deepcopy(manifest)
    change(changed)
    header = [f.name for f in fields(changed) if f.name != "tasks"]
    if any(getattr(changed, n) != getattr(manifest, n) for n in header):
        raise ValueError("a manifest update may change task entries only")
    for task_id, record in changed.tasks.items():
        if manifest.tasks.get(task_id) != record:
            save_record(family_dir, record)
    return changed
