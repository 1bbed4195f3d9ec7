"""`OfflineMetaConfig`: what MACAW's and Offline PEARL's configs share (tasks, data, evaluation).

Each algorithm's config class names its setting groups (`GROUPS`) and Table columns (`PRESETS`);
the builder methods here set only settings of those groups and refuse any other name.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.utils.annotations import override

from ray_macaw.data.samplers import MiddleCentre, Position

# Attributes set by the builder methods, with their defaults (spec §6.2, §10).
ENVIRONMENT = {
    "family": "point-robot",
    "split": None,  # the family's default split when None
    "family_seed": 0,  # seed of the family's task parameters (must match the data)
    "train_tasks": None,  # override the split's training task ids
    "test_tasks": None,  # override the split's held-out task ids
}
DATA = {
    "data_root": None,  # root written by `ray-macaw collect` (ROOT/<family>/manifest.json)
    # Root of the inner (adaptation) and held-out test buffers; None: data_root. The authors'
    # `standard_rand_inner` (spec §7.3): random-policy inner data, behaviour-policy outer data.
    "inner_data_root": None,
    "buffer_stride": 7,  # keep every 7th transition of each task's buffer (spec §6.2)
    "inner_buffer_stride": None,  # stride of the inner and test buffers; None: buffer_stride
    "inner_buffer_size": -1,  # transitions of the inner (adaptation) buffer; -1: all
    "inner_buffer_position": "end",  # start / middle / end: where that buffer lies (§6.2)
    "middle_centre": "half",  # 'half' (true middle) or 'quarter' (the authors' N/4 quirk)
    "outer_buffer_size": -1,  # transitions of the outer buffer (its last ones); -1: all
}


class OfflineMetaConfig(AlgorithmConfig):
    """Base of `MACAWConfig` and `PEARLConfig`: task family, data root and buffer cuts, and the
    held-out evaluation protocol; subclasses add their training settings."""

    GROUPS: ClassVar[dict[str, dict[str, Any]]] = {"environment": ENVIRONMENT, "data": DATA}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"standard": {}}

    family: str
    split: str | None
    family_seed: int
    train_tasks: list[int] | None
    test_tasks: list[int] | None
    data_root: str | None
    inner_data_root: str | None
    buffer_stride: int
    inner_buffer_stride: int | None
    inner_buffer_size: int
    inner_buffer_position: Position
    middle_centre: MiddleCentre
    outer_buffer_size: int
    eval_adaptation_batch_size: int
    eval_episodes_per_task: int
    eval_num_cpus_per_task: float
    eval_at_start: bool

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        for name, value in self.settings().items():
            setattr(self, name, value)
        self.evaluation_interval = 250  # type: ignore[assignment]  # spec §7.1: every 250 steps
        self._is_online = False  # no EnvRunners: offline

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Every setting of this algorithm with its default."""
        return {k: v for group in cls.GROUPS.values() for k, v in group.items()}

    @property
    def algorithm_name(self) -> str:
        """The `algorithm:` value of run files ('macaw', 'pearl')."""
        assert self.algo_class is not None
        return self.algo_class.__name__.lower()

    def _set(self, group: str, values: dict[str, Any]) -> Self:
        for name, value in values.items():
            if value is not NotProvided:
                if name not in self.GROUPS[group]:
                    raise TypeError(f"unknown {self.algorithm_name} {group} setting {name!r}")
                setattr(self, name, value)
        return self

    def preset(self, name: str) -> Self:
        """Apply a column of the paper's hyperparameter table (MACAW: Table 4; PEARL: Table 2):
        'standard' (the defaults) or 'ml45'."""
        if name not in self.PRESETS:
            from ray_macaw.errors import unknown_name

            raise unknown_name("preset", name, self.PRESETS)
        for key, value in self.PRESETS[name].items():
            setattr(self, key, value)
        return self

    @override(AlgorithmConfig)
    def environment(
        self,
        env: Any = NotProvided,
        *,
        family: Any = NotProvided,
        split: Any = NotProvided,
        family_seed: Any = NotProvided,
        train_tasks: Any = NotProvided,
        test_tasks: Any = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """Task family, its split (or explicit task ids), and the seed of its task parameters."""
        super().environment(env, **kwargs)
        return self._set(
            "environment",
            {
                "family": family,
                "split": split,
                "family_seed": family_seed,
                "train_tasks": train_tasks,
                "test_tasks": test_tasks,
            },
        )

    @override(AlgorithmConfig)
    def offline_data(
        self, *, root: Any = NotProvided, inner_root: Any = NotProvided, **kwargs: Any
    ) -> Self:
        """The data root (and optionally another root for the inner and test buffers) and how
        each task's buffers are cut (see `DATA`)."""
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in DATA}
        super().offline_data(**kwargs)
        return self._set("data", {"data_root": root, "inner_data_root": inner_root, **ours})

    @override(AlgorithmConfig)
    def training(self, **kwargs: Any) -> Self:
        """The algorithm's hyperparameters (see its `TRAINING` for meanings and defaults)."""
        training = self.GROUPS["training"]
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in training}
        super().training(**kwargs)
        return self._set("training", ours)

    @override(AlgorithmConfig)
    def evaluation(
        self,
        *,
        adaptation_batch_size: Any = NotProvided,
        adaptation_steps: Any = NotProvided,
        episodes_per_task: Any = NotProvided,
        num_cpus_per_task: Any = NotProvided,
        at_start: Any = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """RLlib's evaluation settings plus the held-out adaptation protocol (spec §7.1)."""
        super().evaluation(**kwargs)
        return self._set(
            "evaluation",
            {
                "eval_adaptation_batch_size": adaptation_batch_size,
                "eval_adaptation_steps": adaptation_steps,
                "eval_episodes_per_task": episodes_per_task,
                "eval_num_cpus_per_task": num_cpus_per_task,
                "eval_at_start": at_start,
            },
        )

    def inner_buffer(self) -> dict[str, Any]:
        """`select_rows` settings of the inner (adaptation) buffers and of the held-out tasks'
        test buffers, which the authors cut the same way (spec §6.2)."""
        stride = (
            self.buffer_stride if self.inner_buffer_stride is None else self.inner_buffer_stride
        )
        return {
            "size": self.inner_buffer_size,
            "stride": stride,
            "position": self.inner_buffer_position,
            "middle_centre": self.middle_centre,
        }

    def outer_buffer(self) -> dict[str, Any]:
        """`select_rows` settings of the outer buffers: always their last rows (spec §6.2)."""
        return {"size": self.outer_buffer_size, "stride": self.buffer_stride}
