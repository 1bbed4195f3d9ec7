"""Open a data root: verified per-task parts, `ray.data.Dataset`s and in-memory `TaskData`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_macaw.data import schema as S
from ray_macaw.data.manifest import MANIFEST_NAME, Manifest, PartRecord, TaskRecord
from ray_macaw.data.storage import ObjectPath, root_path
from ray_macaw.data.task_data import TaskData, table_to_numpy
from ray_macaw.errors import (
    ChecksumError,
    DataError,
    MissingDataError,
    NonFiniteDataError,
    recollect_fix,
    unknown_name,
)

if TYPE_CHECKING:
    import ray.data


def find_families(root: str | Path | ObjectPath) -> list[str]:
    """Names of the family directories under `root` that hold a manifest."""
    root = root_path(root)
    if not root.is_dir():
        raise MissingDataError(
            "data root does not exist",
            "check the path, or create it with `ray-macaw collect --out ROOT`",
            root,
        )
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST_NAME}"))


class TaskDatasets:
    """The offline data of one task family under a root (`<root>/<family>/...`).

    Args:
        root: Data root: a local path or a URI (`s3://bucket/prefix`, see `data/storage.py`).
        family: Which family; may be omitted when the root holds exactly one.
        verify: Check each part's sha256 against the manifest when it is read.
    """

    def __init__(
        self, root: str | Path | ObjectPath, family: str | None = None, *, verify: bool = True
    ) -> None:
        self.root = root_path(root)
        families = find_families(self.root)
        if family is None:
            if len(families) != 1:
                raise MissingDataError(
                    f"root holds {len(families)} families ({', '.join(families) or 'none'})",
                    "name the family (family=...) or collect data into this root first",
                    self.root,
                )
            family = families[0]
        self.family_dir = self.root / family
        if not self.family_dir.is_dir():
            found = ", ".join(families) or "none"
            raise MissingDataError(
                f"no data for family '{family}' in this root (found: {found})",
                f"collect it with `ray-macaw collect --family {family} --out {self.root}`",
                self.family_dir,
            )
        self.manifest = Manifest.load(self.family_dir)
        self.family = self.manifest.family
        self.verify = verify
        self.schema = S.arrow_schema(self.manifest.obs_dim, self.manifest.act_dim)

    @property
    def task_ids(self) -> tuple[int, ...]:
        """Tasks that have at least one part."""
        return tuple(sorted(k for k, v in self.manifest.tasks.items() if v.parts))

    def task_record(self, task_id: int) -> TaskRecord:
        """The manifest entry of a task that has data."""
        record = self.manifest.tasks.get(task_id)
        if record is None or not record.parts:
            raise unknown_name(
                "task id", task_id, self.task_ids, f" (no data for it in {self.family_dir})"
            )
        return record

    def fingerprint(self, task_ids: Iterable[int]) -> str:
        """A short digest of these tasks' parts (their manifest sha256s, in task and part order):
        equal fingerprints mean byte-identical data, so results trained on data collected again
        elsewhere can be told apart from results on the same data (`report/record.py`)."""
        digest = hashlib.sha256()
        for task_id in sorted(set(task_ids)):
            for part in self.task_record(task_id).parts:
                digest.update(f"{task_id} {part.file} {part.sha256}\n".encode())
        return digest.hexdigest()[:16]

    def part_paths(self, task_id: int) -> list[Path | ObjectPath]:
        """Paths of the task's parts, checking that each exists."""
        paths = [self.family_dir / p.file for p in self.task_record(task_id).parts]
        for path in paths:
            if not path.is_file():
                raise MissingDataError(
                    "a part listed in the manifest is missing",
                    f"restore the file, or {recollect_fix(self.family_dir, task_id)}",
                    path,
                )
        return paths

    def ray_dataset(self, task_id: int) -> ray.data.Dataset:
        """The task's rows as a `ray.data.Dataset`; every part is checked first (sha256 when
        `verify`, schema, no NaN or inf)."""
        import ray.data

        # Every part is read once first: its checksum (when `verify`), schema and the finiteness
        # of its float columns, as `load` checks them (the rows Ray reads are the same bytes).
        for part in self.task_record(task_id).parts:
            self.read_part(part, columns=[S.TASK_ID, *S.FLOAT_COLUMNS])
        paths = [str(p) for p in self.part_paths(task_id)]
        # The task id is a stored column; reading the directory name as a hive partition would
        # add it a second time.
        dataset = ray.data.read_parquet(paths, partitioning=None)
        return dataset.map_batches(table_to_numpy, batch_format="pyarrow")

    def load(self, task_id: int) -> TaskData:
        """Read, verify and hold one task's data in memory, ordered by `step`."""
        record = self.task_record(task_id)
        tables = [self.read_part(part) for part in record.parts]
        table = pa.concat_tables(tables)
        self._check_rows(table, task_id)
        return TaskData.from_table(task_id, table)

    def load_all(self, task_ids: Iterable[int] | None = None) -> dict[int, TaskData]:
        """`load` for several tasks (all tasks with data when None)."""
        return {k: self.load(k) for k in (self.task_ids if task_ids is None else task_ids)}

    def read_part(
        self, part: PartRecord, columns: Sequence[str] | None = None, *, verify: bool | None = None
    ) -> pa.Table:
        """Read one part: checksum, Parquet parse, schema and finiteness checks.

        Args:
            part: The manifest's record of the part.
            columns: Columns to read (all when None).
            verify: Check the sha256; the dataset's `verify` setting when None.
        """
        path = self.family_dir / part.file
        if not path.is_file():
            raise MissingDataError(
                "a part listed in the manifest is missing",
                f"restore the file, or {self._recollect(part)}",
                path,
            )
        data = path.read_bytes()
        if (self.verify if verify is None else verify) and hashlib.sha256(
            data
        ).hexdigest() != part.sha256:
            raise ChecksumError(
                "part's sha256 does not match the manifest (changed or truncated after writing)",
                f"restore the part from a backup, or {self._recollect(part)}; pass "
                "verify=False only if you changed it on purpose",
                path,
            )
        try:
            parquet = pq.ParquetFile(pa.BufferReader(data))
            S.check_schema(parquet.schema_arrow, self.schema, path, self._recollect(part))
            table = parquet.read(columns=list(columns) if columns is not None else None)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(
                f"part is not a readable Parquet file ({e})",
                f"restore it from a backup, or {self._recollect(part)}",
                path,
            ) from e
        check_finite(table, path, self._recollect(part))
        return table

    def _recollect(self, part: PartRecord) -> str:
        """The re-collect fix for the task a part belongs to ('task_id=<k>/part-...')."""
        task = part.file.split("/", 1)[0].partition("=")[2]
        return recollect_fix(self.family_dir, int(task) if task.isdigit() else -1)

    def _check_rows(self, table: pa.Table, task_id: int) -> None:
        if table.num_rows == 0:
            raise DataError(
                f"task {task_id} has no rows",
                recollect_fix(self.family_dir, task_id),
                self.family_dir,
            )
        ids = pc.unique(table.column(S.TASK_ID)).to_pylist()
        if ids != [task_id]:
            raise DataError(
                f"rows of task {task_id} carry task_id values {ids}",
                "the parts were moved between task directories; move them back, or "
                + recollect_fix(self.family_dir, task_id),
                self.family_dir / f"{S.TASK_ID}={task_id}",
            )

    def inspect(self) -> dict[str, Any]:
        """Per task: rows, episodes, mean and max episode return, checksum status."""
        from ray_macaw.data.inspect import inspect_family

        return inspect_family(self)


def check_finite(
    table: pa.Table, path: Path | ObjectPath, recollect: str = "re-collect the task"
) -> None:
    """Raise `NonFiniteDataError` if any float column of `table` holds NaN or inf."""
    for name in S.FLOAT_COLUMNS:
        if name not in table.column_names:
            continue
        column = table.column(name)
        values = column.combine_chunks()
        if pa.types.is_fixed_size_list(values.type):
            values = values.flatten()
        finite = np.isfinite(values.to_numpy(zero_copy_only=False))
        if not finite.all():
            raise NonFiniteDataError(
                f"column '{name}' holds {int((~finite).sum())} NaN or inf values",
                f"{recollect} (the behaviour policy or environment diverged), or drop the bad "
                "episodes before training",
                path,
            )
