"""`manifest.json` of a family directory: what was collected, how, and the sha256 of every part."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ray_macaw.data.atomic import atomic_write_bytes, file_lock
from ray_macaw.data.manifest_records import read_records, uses_task_records, write_record
from ray_macaw.data.schema import SCHEMA_VERSION
from ray_macaw.data.storage import ObjectPath, StoragePath, local_lock_dir
from ray_macaw.errors import DataError, MissingDataError, SchemaError, SchemaVersionError

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".manifest.lock"


@dataclass
class PartRecord:
    """One complete Parquet part of a task.

    Attributes:
        file: Path relative to the family directory, e.g. 'task_id=3/part-00000.parquet'.
        rows: Transitions in the part.
        episodes: Whole episodes in the part (parts always end on an episode boundary).
        sha256: Hex digest of the file's bytes.
        first_step: Lifetime-buffer index (`step` column) of the part's first row.
    """

    file: str
    rows: int
    episodes: int
    sha256: str
    first_step: int


@dataclass
class TaskRecord:
    """Everything the manifest knows about one task's data."""

    task_id: int
    params: dict[str, Any]
    parts: list[PartRecord] = field(default_factory=list)
    complete: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Transitions over all parts."""
        return sum(p.rows for p in self.parts)

    @property
    def episodes(self) -> int:
        """Episodes over all parts."""
        return sum(p.episodes for p in self.parts)


@dataclass
class Manifest:
    """The manifest of one family directory (`<root>/<family>/manifest.json`)."""

    family: str
    family_seed: int
    split: str
    obs_dim: int
    act_dim: int
    gamma: float
    tasks: dict[int, TaskRecord]
    bootstrap_after_termination: bool = True
    collector: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    # The family's model, library and reward versions and options (TaskFamily.environment).
    environment: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """Serialise (task ids become JSON object keys)."""
        doc = asdict(self)
        doc["tasks"] = {str(k): v for k, v in doc["tasks"].items()}
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: StoragePath) -> Manifest:
        """Parse and check a manifest; errors name `path`."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(
                f"manifest is not valid JSON ({e.msg} at line {e.lineno})",
                "restore the file from a backup or re-run the collection into a new root; "
                "the Parquet parts themselves are untouched",
                path,
            ) from e
        if not isinstance(doc, dict):
            raise SchemaError(
                f"manifest must be a JSON object, got {type(doc).__name__}",
                "restore the file from a backup or re-collect into a new root",
                path,
            )
        check_version(doc, path)
        try:
            tasks = {
                int(k): TaskRecord(**{**v, "parts": [PartRecord(**p) for p in v.get("parts", [])]})
                for k, v in doc.pop("tasks").items()
            }
            manifest = cls(**doc, tasks=tasks)
            check_fields(manifest, path)
            return manifest
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SchemaError(
                f"manifest has missing or unexpected fields ({e})",
                "restore the file from a backup or re-collect into a new root",
                path,
            ) from e

    @classmethod
    def load(cls, family_dir: Path | ObjectPath) -> Manifest:
        """Read `<family_dir>/manifest.json` (and merge the per-task records of object storage)."""

        path = family_dir / MANIFEST_NAME
        if not path.is_file():
            raise MissingDataError(
                "no manifest.json in the family directory",
                "point at a root written by `ray-macaw collect` (ROOT/<family>/manifest.json)",
                path,
            )
        return _merge_records(cls.from_json(path.read_text(), path), family_dir)

    def save(self, family_dir: Path | ObjectPath) -> None:
        """Write atomically (temporary file, then rename)."""
        atomic_write_bytes(family_dir / MANIFEST_NAME, self.to_json().encode())


_PART_FIELDS = {"file": str, "rows": int, "episodes": int, "sha256": str, "first_step": int}


def check_fields(manifest: Manifest, path: StoragePath) -> None:
    """Field types a JSON manifest could get wrong, and part paths confined to the family
    directory (no absolute path, no '..'), so a manifest never makes ray-macaw read elsewhere.

    Raises:
        TypeError: A field of the wrong type (reported as a `SchemaError` by `from_json`).
        SchemaError: A part path outside the family directory.
    """
    for name in ("obs_dim", "act_dim", "family_seed"):
        if type(getattr(manifest, name)) is not int:
            raise TypeError(f"'{name}' must be an integer")
    for task_id, task in manifest.tasks.items():
        if not isinstance(task.parts, list) or not isinstance(task.complete, bool):
            raise TypeError(f"task {task_id}: 'parts' must be a list and 'complete' a boolean")
        for part in task.parts:
            for name, kind in _PART_FIELDS.items():
                if type(getattr(part, name)) is not kind:
                    raise TypeError(f"task {task_id}: part '{name}' must be {kind.__name__}")
            relative = Path(part.file)
            if relative.is_absolute() or ".." in relative.parts:
                raise SchemaError(
                    f"task {task_id} lists a part outside the family directory: '{part.file}'",
                    "part paths must be relative to the family directory (task_id=<k>/...); "
                    "restore the manifest from a backup",
                    path,
                )


def check_version(doc: dict[str, Any], path: StoragePath) -> None:
    """Refuse manifests from a newer data format than this ray-macaw reads."""
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise SchemaError(
            "manifest has no integer 'schema_version'",
            "restore the file from a backup or re-collect into a new root",
            path,
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"manifest uses data format v{version}; this ray-macaw reads up to v{SCHEMA_VERSION}",
            "upgrade ray-macaw (`pip install -U ray-macaw`) to read this root",
            path,
        )


def manifest_lock(family_dir: Path | ObjectPath) -> contextlib.AbstractContextManager[None]:
    """The lock of a family's manifest: a lock file beside it; for object storage (which has no
    locks) one in this machine's lock directory, so only this machine's writers wait on it."""
    return file_lock(local_lock_dir(family_dir) / LOCK_NAME)


def update_manifest(family_dir: Path | ObjectPath, change: Callable[[Manifest], None]) -> Manifest:
    """Apply `change` to the manifest under an exclusive lock, then save it atomically.

    Several collector processes on one filesystem can record their parts without losing each
    other's updates; on object storage each task's entry is its own object
    (`manifest_records`), so writers of different tasks never overwrite each other.
    """
    with manifest_lock(family_dir):
        manifest = Manifest.load(family_dir)
        if uses_task_records(family_dir):
            return _update_records(family_dir, manifest, change)
        change(manifest)
        manifest.save(family_dir)
    return manifest


def _merge_records(manifest: Manifest, family_dir: StoragePath) -> Manifest:
    """`manifest` with each task's own record (`manifest_records`) in place of its entry."""
    for path, doc in read_records(family_dir):
        check_version(doc, path)
        doc.pop("schema_version")
        try:
            parts = [PartRecord(**p) for p in doc.pop("parts", [])]
            manifest.tasks[doc["task_id"]] = TaskRecord(**doc, parts=parts)
        except (TypeError, ValueError) as e:
            raise SchemaError(
                f"task record has missing or unexpected fields ({e})",
                "delete it to fall back to manifest.json's entry, or re-collect the task",
                path,
            ) from e
    check_fields(manifest, family_dir)
    return manifest


def _update_records(
    family_dir: StoragePath, manifest: Manifest, change: Callable[[Manifest], None]
) -> Manifest:
    """Apply `change` to a merged manifest and write the records of the tasks it changed (the
    family's settings in manifest.json are written once, when the root is made)."""
    changed = copy.deepcopy(manifest)
    change(changed)
    settings = [f.name for f in fields(changed) if f.name != "tasks"]
    if any(getattr(changed, n) != getattr(manifest, n) for n in settings):
        raise ValueError("a manifest update may change task entries only")
    for task_id, record in changed.tasks.items():
        if manifest.tasks.get(task_id) != record:
            write_record(family_dir, task_id, {"schema_version": SCHEMA_VERSION, **asdict(record)})
    return changed
