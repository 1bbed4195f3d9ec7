"""The offline data format: column names, Arrow schema and version (spec §6.1).

One row per transition. Names follow RLlib's `Columns` where one exists (`obs`, `actions`,
`rewards`, `t`); the rest are MACAW's (`mc_return` = R, `terminal_obs` = s^T,
`terminal_discount` = g).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ray_macaw.data.columns import (
    ACTIONS,
    EPISODE_ID,
    FLOAT_COLUMNS,
    MC_RETURN,
    NEXT_OBS,
    OBS,
    REWARDS,
    STEP,
    TASK_ID,
    TERMINAL_DISCOUNT,
    TERMINAL_OBS,
    TERMINATED,
    TRUNCATED,
    T,
)
from ray_macaw.data.storage import ObjectPath
from ray_macaw.errors import SchemaError

__all__ = [
    "ACTIONS",
    "EPISODE_ID",
    "FLOAT_COLUMNS",
    "MC_RETURN",
    "NEXT_OBS",
    "OBS",
    "REWARDS",
    "SCHEMA_VERSION",
    "STEP",
    "TASK_ID",
    "TERMINAL_DISCOUNT",
    "TERMINAL_OBS",
    "TERMINATED",
    "TRUNCATED",
    "T",
    "arrow_schema",
    "check_schema",
]

SCHEMA_VERSION = 1


def arrow_schema(obs_dim: int, act_dim: int) -> pa.Schema:
    """The Arrow schema of a part file for observations of `obs_dim` and actions of `act_dim`."""

    def vec(dim: int) -> pa.DataType:
        return pa.list_(pa.float32(), dim)

    return pa.schema(
        [
            (TASK_ID, pa.int32()),
            (EPISODE_ID, pa.int64()),
            (T, pa.int32()),
            (STEP, pa.int64()),
            (OBS, vec(obs_dim)),
            (ACTIONS, vec(act_dim)),
            (NEXT_OBS, vec(obs_dim)),
            (TERMINAL_OBS, vec(obs_dim)),
            (REWARDS, pa.float32()),
            (TERMINATED, pa.bool_()),
            (TRUNCATED, pa.bool_()),
            (MC_RETURN, pa.float32()),
            (TERMINAL_DISCOUNT, pa.float32()),
        ]
    )


def check_schema(
    actual: pa.Schema,
    expected: pa.Schema,
    path: str | Path | ObjectPath,
    recollect: str = "re-collect this task",
) -> None:
    """Raise `SchemaError` naming every missing or mistyped column of a part file."""
    problems = []
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            problems.append(f"missing column '{field.name}' ({field.type})")
        elif not actual.field(index).type.equals(field.type):
            problems.append(
                f"column '{field.name}' is {actual.field(index).type}, expected {field.type}"
            )
    if problems:
        raise SchemaError(
            "part file does not match the ray-macaw data schema v"
            f"{SCHEMA_VERSION}: " + "; ".join(problems),
            f"{recollect}, or convert the file with the column names and types listed in "
            "docs/data-format.md",
            path,
        )
