"""Look up task families by name."""

from __future__ import annotations

from ray_macaw.errors import unknown_name
from ray_macaw.tasks.ant_dir import AntDirFamily
from ray_macaw.tasks.base import TaskFamily
from ray_macaw.tasks.cheetah import CheetahDirFamily, CheetahVelFamily
from ray_macaw.tasks.metaworld_ml45 import (
    ML45AuthorsFamily,
    ML45Family,
    ML45FixedStickFamily,
    ML45GoalFamily,
)
from ray_macaw.tasks.point_robot import PointRobotFamily
from ray_macaw.tasks.walker_params import WalkerParamsFamily

FAMILIES: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (
        PointRobotFamily,
        CheetahDirFamily,
        CheetahVelFamily,
        AntDirFamily,
        WalkerParamsFamily,
        ML45Family,
        ML45GoalFamily,
        ML45FixedStickFamily,
        ML45AuthorsFamily,
    )
}


def get_task_family(name: str, seed: int = 0) -> TaskFamily:
    """The task family called `name` (e.g. 'cheetah-vel'), built with `seed`.

    Raises:
        UnknownNameError: `name` is not a family; the message lists the families.
    """
    if name not in FAMILIES:
        raise unknown_name("task family", name, FAMILIES)
    return FAMILIES[name](seed=seed)
