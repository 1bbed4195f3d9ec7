"""Write a family's offline data: per-task Parquet parts, atomic, resumable, in the manifest."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_macaw.data import schema as S
from ray_macaw.data.atomic import atomic_write_bytes
from ray_macaw.data.manifest import (
    Manifest,
    PartRecord,
    TaskRecord,
    manifest_lock,
    update_manifest,
)
from ray_macaw.data.returns import EpisodeReturns, episode_returns
from ray_macaw.data.storage import ObjectPath, StoragePath, replace, root_path
from ray_macaw.errors import DataError, NonFiniteDataError
from ray_macaw.tasks.base import TaskFamily

DEFAULT_ROWS_PER_PART = 100_000
_VERSIONED_LIBRARIES = ("ray", "torch", "gymnasium", "mujoco", "metaworld", "pyarrow", "numpy")


def task_dir_name(task_id: int) -> str:
    """Hive partition directory of a task: 'task_id=<k>'."""
    return f"{S.TASK_ID}={task_id}"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the data, for the manifest."""
    versions = {}
    for name in _VERSIONED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class ConcurrentWriteError(DataError):
    """Two writers appended to one task; the second one's part was refused."""


@dataclass
class _Pending:
    """Columns of whole episodes not yet written to a part."""

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rows: int = 0
    episodes: int = 0

    def append(self, episode: Mapping[str, np.ndarray]) -> None:
        for name, values in episode.items():
            self.columns.setdefault(name, []).append(values)
        self.rows += len(episode[S.REWARDS])
        self.episodes += 1


class DatasetWriter:
    """Open (or create) `<root>/<family>` for writing.

    An existing manifest must have been written with the same family, seed, dimensions and gamma;
    otherwise writing is refused, so new rows never mix with data of other settings.

    Args:
        root: Data root: a local path or a URI (`s3://bucket/prefix`, see `data/storage.py`).
        family: The task family whose tasks are written.
        obs_dim: Observation size.
        act_dim: Action size.
        gamma: Discount of mc_return and terminal_discount.
        bootstrap_after_termination: g = gamma^(L-t) also after true terminations (the authors'
            data, spec §4.1); False writes g = 0 for terminated episodes.
        split: Split name recorded in the manifest.
        collector: Collector name and settings (recorded; must match on resume).
        seeds: Seeds used, for the record.
    """

    def __init__(
        self,
        root: str | Path | ObjectPath,
        family: TaskFamily,
        *,
        obs_dim: int,
        act_dim: int,
        gamma: float = 0.99,
        bootstrap_after_termination: bool = True,
        split: str | None = None,
        collector: Mapping[str, Any] | None = None,
        seeds: Mapping[str, Any] | None = None,
    ) -> None:
        self.family = family
        self.family_dir = root_path(root) / family.name
        self.schema = S.arrow_schema(obs_dim, act_dim)
        wanted = Manifest(
            family=family.name,
            family_seed=family.seed,
            split=family.split(split).name,
            obs_dim=obs_dim,
            act_dim=act_dim,
            gamma=gamma,
            bootstrap_after_termination=bootstrap_after_termination,
            tasks={t.id: TaskRecord(t.id, dict(t.params)) for t in family.tasks},
            # Through JSON, so tuples compare equal to the lists a saved manifest holds.
            collector=json.loads(json.dumps(dict(collector or {}))),
            seeds=json.loads(json.dumps(dict(seeds or {}))),
            library_versions=library_versions(),
            environment=json.loads(json.dumps(family.environment())),
        )
        try:
            self.family_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(
                f"cannot create the family directory: {e.strerror}",
                "choose a writable root",
                self.family_dir,
            ) from e
        with manifest_lock(self.family_dir):
            if (self.family_dir / "manifest.json").exists():
                _check_compatible(Manifest.load(self.family_dir), wanted, self.family_dir)
            else:
                wanted.save(self.family_dir)
        self.gamma = gamma
        self.bootstrap_after_termination = bootstrap_after_termination

    def task_writer(self, task_id: int, rows_per_part: int = DEFAULT_ROWS_PER_PART) -> TaskWriter:
        """A writer that appends to `task_id`'s parts, resuming after its last complete part."""
        self.family.task(task_id)
        record = Manifest.load(self.family_dir).tasks[task_id]
        return TaskWriter(self, task_id, record, rows_per_part)

    def mark_complete(self, task_id: int, info: Mapping[str, Any] | None = None) -> None:
        """Record that `task_id` is fully collected, with optional collector info (curves...)."""

        def change(m: Manifest) -> None:
            m.tasks[task_id].complete = True
            m.tasks[task_id].info.update(info or {})

        update_manifest(self.family_dir, change)

    def record_run(self, task_id: int, run: Mapping[str, Any]) -> None:
        """Append one (re)start of a task's collection to its `info["runs"]`."""
        update_manifest(
            self.family_dir,
            lambda m: m.tasks[task_id].info.setdefault("runs", []).append(dict(run)),
        )


def _check_compatible(existing: Manifest, wanted: Manifest, family_dir: StoragePath) -> None:
    keys = (
        "family",
        "family_seed",
        "obs_dim",
        "act_dim",
        "gamma",
        "bootstrap_after_termination",
        "collector",
        "environment",
    )
    old = _flatten({k: getattr(existing, k) for k in keys})
    new = _flatten({k: getattr(wanted, k) for k in keys})
    diffs = [
        f"{k}: {old.get(k, '(unset)')!r} there, {new.get(k, '(unset)')!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if diffs:
        raise DataError(
            "this root already holds data written with other settings (" + "; ".join(diffs) + ")",
            "re-run with the original settings to resume, or write to a new root",
            family_dir,
        )


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, so a difference names the exact setting."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class TaskWriter:
    """Buffers whole episodes of one task and writes them as Parquet parts.

    A part is written when `rows_per_part` rows are pending and on `flush()`; every part ends on
    an episode boundary, and is recorded in the manifest only once it is complete on disk.
    """

    def __init__(
        self, parent: DatasetWriter, task_id: int, record: TaskRecord, rows_per_part: int
    ) -> None:
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be positive, got {rows_per_part}")
        self.parent = parent
        self.task_id = task_id
        self.rows_per_part = rows_per_part
        self.next_part = len(record.parts)
        self.next_step = record.rows
        self.next_episode = record.episodes
        self._pending = _Pending()
        # Called with each part after its file is complete and before the manifest records it
        # (the collector saves the agent checkpoint that goes with the part here).
        self.before_record: Callable[[PartRecord], None] | None = None

    @property
    def rows_written(self) -> int:
        """Rows in complete parts plus rows pending (the task's lifetime-buffer length so far)."""
        return self.next_step

    @property
    def rows_recorded(self) -> int:
        """Rows in parts already recorded in the manifest (pending rows excluded)."""
        return self.next_step - self._pending.rows

    def add_episode(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        *,
        terminated: bool,
        precomputed: EpisodeReturns | None = None,
    ) -> None:
        """Append one episode (time order); its last step ended in a terminal state or not.

        An episode that did not terminate was truncated (time limit or end of collection), so
        its value at s^T is bootstrapped.

        Args:
            obs, actions, rewards, next_obs: The episode's steps in time order.
            terminated: The last step ended in a true terminal state.
            precomputed: R, g and s^T as another writer stored them (imports); computed from
                the rewards with the root's gamma when None.

        Raises:
            NonFiniteDataError: NaN or inf in any input; nothing is written.
        """
        length = len(rewards)
        cols = {S.OBS: obs, S.ACTIONS: actions, S.REWARDS: rewards, S.NEXT_OBS: next_obs}
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in cols.items()}
        self._check_episode(arrays, length)
        if precomputed is None:
            ret = episode_returns(
                arrays[S.REWARDS],
                arrays[S.NEXT_OBS][-1],
                self.parent.gamma,
                terminated,
                self.parent.bootstrap_after_termination,
            )
        else:
            ret = precomputed
            self._check_episode(
                {S.MC_RETURN: ret.mc_return, S.TERMINAL_DISCOUNT: ret.terminal_discount}, length
            )
        last = np.arange(length) == length - 1
        self._pending.append(
            {
                **arrays,
                S.TASK_ID: np.full(length, self.task_id, dtype=np.int32),
                S.EPISODE_ID: np.full(length, self.next_episode, dtype=np.int64),
                S.T: np.arange(length, dtype=np.int32),
                S.STEP: np.arange(self.next_step, self.next_step + length, dtype=np.int64),
                S.TERMINAL_OBS: np.broadcast_to(ret.terminal_obs, arrays[S.OBS].shape),
                S.TERMINATED: last & terminated,
                S.TRUNCATED: last & (not terminated),
                S.MC_RETURN: ret.mc_return,
                S.TERMINAL_DISCOUNT: ret.terminal_discount,
            }
        )
        self.next_step += length
        self.next_episode += 1
        if self._pending.rows >= self.rows_per_part:
            self.flush()

    def _check_episode(self, arrays: Mapping[str, np.ndarray], length: int) -> None:
        obs_dim = self.parent.schema.field(S.OBS).type.list_size
        act_dim = self.parent.schema.field(S.ACTIONS).type.list_size
        expected = {
            S.OBS: (length, obs_dim),
            S.NEXT_OBS: (length, obs_dim),
            S.ACTIONS: (length, act_dim),
            S.REWARDS: (length,),
            S.MC_RETURN: (length,),
            S.TERMINAL_DISCOUNT: (length,),
        }
        if length == 0:
            raise ValueError("an episode needs at least one step")
        for name, values in arrays.items():
            shape = expected[name]
            if values.shape != shape:
                raise ValueError(f"{name} has shape {values.shape}, expected {shape}")
            if not np.isfinite(values).all():
                raise NonFiniteDataError(
                    f"episode {self.next_episode} of task {self.task_id} has NaN or inf in "
                    f"'{name}'",
                    "check the environment and behaviour policy; the episode was not written",
                )

    def flush(self) -> PartRecord | None:
        """Write pending episodes as one part and record it in the manifest.

        The part is written under a name of its own, then renamed into place and recorded under
        the manifest's lock, only if the task still ends where this writer started it (so a
        second writer of the task, e.g. a killed command's leftover actor, can never interleave
        or duplicate rows: its append is refused and nothing it wrote is recorded).

        Raises:
            ConcurrentWriteError: Another writer appended to the task since this one opened it.
        """
        if self._pending.rows == 0:
            return None
        table = self._pending_table()
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        family_dir = self.parent.family_dir
        relative = f"{task_dir_name(self.task_id)}/part-{self.next_part:05d}.parquet"
        final = family_dir / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.with_name(f".{final.name}.{uuid.uuid4().hex}.staged")
        try:
            atomic_write_bytes(staged, data)
        except DataError as e:  # name the part, not its staging name
            raise DataError(e.problem.replace(staged.name, final.name), e.fix, final) from e
        part = PartRecord(
            file=relative,
            rows=table.num_rows,
            episodes=self._pending.episodes,
            sha256=hashlib.sha256(data).hexdigest(),
            first_step=int(table.column(S.STEP)[0].as_py()),
        )
        try:
            self._check_appends(Manifest.load(family_dir), part)  # before the agent checkpoint
            if self.before_record is not None:
                self.before_record(part)
            update_manifest(family_dir, lambda m: self._record(m, part, staged, final))
        finally:
            staged.unlink(missing_ok=True)
        self.next_part += 1
        self._pending = _Pending()
        return part

    def _check_appends(self, manifest: Manifest, part: PartRecord) -> None:
        record = manifest.tasks[self.task_id]
        if part.first_step != record.rows or len(record.parts) != self.next_part:
            raise ConcurrentWriteError(
                f"another writer appended to task {self.task_id} while this one was writing: "
                f"the task now holds {record.rows} rows in {len(record.parts)} parts, this part "
                f"starts at step {part.first_step}; the part was not recorded",
                "run one collection per task at a time; re-running the command resumes from "
                "the task's last complete part",
                self.parent.family_dir / task_dir_name(self.task_id),
            )

    def _record(
        self,
        manifest: Manifest,
        part: PartRecord,
        staged: Path | ObjectPath,
        final: Path | ObjectPath,
    ) -> None:
        """Under the manifest lock: check, move the part into place, list it."""
        self._check_appends(manifest, part)
        replace(staged, final)
        manifest.tasks[self.task_id].parts.append(part)

    def _pending_table(self) -> pa.Table:
        arrays = []
        for field_ in self.parent.schema:
            values = np.concatenate(self._pending.columns[field_.name])
            if pa.types.is_fixed_size_list(field_.type):
                flat = pa.array(values.reshape(-1), type=pa.float32())
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, field_.type.list_size))
            else:
                arrays.append(pa.array(values, type=field_.type))
        return pa.Table.from_arrays(arrays, schema=self.parent.schema)
