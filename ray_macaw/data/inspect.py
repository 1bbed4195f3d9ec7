"""`ray-macaw dataset inspect`: what a data root holds, task by task, and whether it is intact."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ray_macaw.data import schema as S
from ray_macaw.data.returns import undiscounted_returns
from ray_macaw.errors import ChecksumError, DataError, MissingDataError

if TYPE_CHECKING:
    from ray_macaw.data.datasets import TaskDatasets

CHECKSUM_OK = "ok"


def inspect_family(datasets: TaskDatasets) -> dict[str, Any]:
    """Summary of one family: per task rows, episodes, returns and checksum status.

    Problems with a part (missing, checksum mismatch, unreadable) are reported in the task's
    `checksum` field rather than raised, so one bad part does not hide the rest of the root.
    """
    tasks = []
    for task_id in datasets.task_ids:
        record = datasets.task_record(task_id)
        status, returns = _task_returns(datasets, task_id)
        tasks.append(
            {
                "task_id": task_id,
                "rows": record.rows,
                "episodes": record.episodes,
                "parts": len(record.parts),
                "complete": record.complete,
                "mean_return": float(np.mean(returns)) if len(returns) else None,
                "max_return": float(np.max(returns)) if len(returns) else None,
                "checksum": status,
            }
        )
    return {
        "family": datasets.family,
        "path": str(datasets.family_dir),
        "schema_version": datasets.manifest.schema_version,
        "obs_dim": datasets.manifest.obs_dim,
        "act_dim": datasets.manifest.act_dim,
        "tasks": tasks,
    }


def _task_returns(datasets: TaskDatasets, task_id: int) -> tuple[str, np.ndarray]:
    """(checksum status, undiscounted episode returns) of one task."""
    columns = [S.EPISODE_ID, S.REWARDS]
    try:
        tables = [
            datasets.read_part(part, columns, verify=True)
            for part in datasets.task_record(task_id).parts
        ]
    except ChecksumError as e:
        return f"mismatch: {_name(e.path)}", np.empty(0)
    except MissingDataError as e:
        return f"missing: {_name(e.path)}", np.empty(0)
    except DataError as e:
        return f"unreadable: {_name(e.path)} ({e.problem})", np.empty(0)
    table = pa.concat_tables(tables)
    return CHECKSUM_OK, undiscounted_returns(
        table.column(S.EPISODE_ID).to_numpy(), table.column(S.REWARDS).to_numpy()
    )


def _name(path: Path | None) -> str:
    return "?" if path is None else f"{path.parent.name}/{path.name}"
