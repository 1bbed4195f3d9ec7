"""`OfflineMetaConfig`: what MACAW's and Offline PEARL's configs share (tasks, data, evaluation).

Settings follow RLlib's pattern (`rllib/algorithms/marwil/marwil.py`): each is an attribute whose
type and default are set in `__init__`, and a keyword-only parameter of one setter
(`environment`, `offline_data`, `training`, `evaluation`, ...), documented once in that setter's
`Args:`. `settings()` and `setting_types()` read the setters' signatures, so run files, Tune
experiments and resume checks know every setting without a second list.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, ClassVar, Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.algorithm_config import NotProvided as _NOT_PROVIDED
from ray.rllib.utils.annotations import override

from ray_macaw.algorithms.common import rllib_internals
from ray_macaw.algorithms.common.data_checks import check_data_serves, resolve_split
from ray_macaw.data.samplers import MiddleCentre, Position
from ray_macaw.errors import RayMacawError

# RLlib's "leave unchanged" sentinel, typed Any so that each setter parameter can carry the type
# its setting takes (`task_batch_size: int = NotProvided`).
NotProvided: Any = _NOT_PROVIDED


class ConfigError(RayMacawError, ValueError):
    """A setting (or the data it names) that cannot work, and how to fix it."""


class OfflineMetaConfig(AlgorithmConfig):
    """Base of `MACAWConfig` and `PEARLConfig`: task family, data root and buffer cuts, and the
    held-out evaluation protocol; subclasses add their training settings."""

    # The algorithm this config builds, set by the algorithm's `@Config.builds` decorator.
    algorithm_class: ClassVar[type | None] = None
    # The error `validate()` raises.
    error: ClassVar[type[ConfigError]] = ConfigError
    # Setters whose keyword-only parameters are this algorithm's settings.
    SETTERS: ClassVar[tuple[str, ...]] = ("environment", "offline_data", "training", "evaluation")
    # Parameters whose attribute has another name: a prefix per setter, and single renames.
    PREFIXES: ClassVar[dict[str, str]] = {"evaluation": "eval_"}
    RENAMES: ClassVar[dict[str, str]] = {"root": "data_root", "inner_root": "inner_data_root"}
    # Settings that must be positive (checked by `validate`).
    POSITIVE: ClassVar[tuple[str, ...]] = (
        "task_batch_size",
        "buffer_stride",
        "eval_adaptation_batch_size",
        "eval_adaptation_batches",
        "eval_episodes_per_task",
    )
    # Columns of the paper's hyperparameter table: setting -> value where it differs.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"standard": {}}

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or type(self).algorithm_class)
        # .environment() (spec §6.2, §10)
        self.family = "point-robot"
        self.split: str | None = None
        self.family_seed = 0
        self.train_tasks: list[int] | None = None
        self.test_tasks: list[int] | None = None
        # .offline_data()
        self.data_root: str | None = None
        self.inner_data_root: str | None = None
        self.buffer_stride = 7
        self.inner_buffer_stride: int | None = None
        self.inner_buffer_size = -1
        self.inner_buffer_position: Position = "end"
        self.middle_centre: MiddleCentre = "half"
        self.outer_buffer_size = -1
        # .evaluation()
        self.eval_adaptation_batch_size = 256
        self.eval_adaptation_batches = 1
        self.eval_episodes_per_task = 1
        self.eval_num_cpus_per_task = 1.0
        self.eval_at_start = True
        self.evaluation_interval = 250  # type: ignore[assignment]  # spec §7.1: every 250 steps
        rllib_internals.mark_offline(self)  # no EnvRunners

    @classmethod
    def builds(cls, algorithm: type) -> type:
        """Class decorator on the algorithm this config builds (RLlib's `algo_class`), which
        learns its config class from it; the algorithm imports its config, never the other way
        round."""
        cls.algorithm_class = algorithm
        algorithm.config_class = cls  # type: ignore[attr-defined]
        return algorithm

    @classmethod
    def _declaring(cls, setter: str) -> list[type]:
        """The classes from this one up to RLlib's `AlgorithmConfig` that define `setter`; each
        declares its own settings and passes the rest on to `super()`."""
        return [k for k in cls.__mro__[: cls.__mro__.index(AlgorithmConfig)] if setter in vars(k)]

    @classmethod
    def parameters(cls) -> dict[str, dict[str, str]]:
        """setter -> {parameter: attribute} for every setting."""
        found: dict[str, dict[str, str]] = {}
        for setter in cls.SETTERS:
            prefix = cls.PREFIXES.get(setter, "")
            found[setter] = {
                name: cls.RENAMES.get(name, prefix + name)
                for klass in reversed(cls._declaring(setter))
                for name, p in inspect.signature(vars(klass)[setter]).parameters.items()
                if p.kind is p.KEYWORD_ONLY
            }
        return found

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Every setting of this algorithm with its default."""
        defaults = cls()
        return {a: getattr(defaults, a) for s in cls.parameters().values() for a in s.values()}

    @classmethod
    def setting_types(cls) -> dict[str, Any]:
        """Every setting with the type its setter parameter declares."""
        found = {}
        for setter, names in cls.parameters().items():
            hints: dict[str, Any] = {}
            for klass in cls._declaring(setter):
                hints = {**typing.get_type_hints(vars(klass)[setter]), **hints}
            found.update({attribute: hints[name] for name, attribute in names.items()})
        return found

    @property
    def algorithm_name(self) -> str:
        """The `algorithm:` value of run files ('macaw', 'pearl')."""
        assert self.algo_class is not None
        return self.algo_class.__name__.lower()

    def _apply(self, setter: str, values: dict[str, Any]) -> Self:
        """Set the settings of `setter` that were given (`values`: the setter's `locals()`)."""
        for name, attribute in self.parameters()[setter].items():
            if values.get(name, NotProvided) is not NotProvided:
                setattr(self, attribute, values[name])
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
        family: str = NotProvided,
        split: str | None = NotProvided,
        family_seed: int = NotProvided,
        train_tasks: list[int] | None = NotProvided,
        test_tasks: list[int] | None = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """The task family and which of its tasks train and which are held out (spec §6.2).

        Args:
            family: A task family (`ray-macaw tasks` lists them).
            split: One of the family's splits; None: its default split.
            family_seed: Seed of the family's task parameters (must match the data's).
            train_tasks: Training task ids in place of the split's.
            test_tasks: Held-out task ids in place of the split's.
            kwargs: RLlib's `environment()` settings.
        """
        super().environment(env, **kwargs)
        return self._apply("environment", locals())

    @override(AlgorithmConfig)
    def offline_data(
        self,
        *,
        root: str | None = NotProvided,
        inner_root: str | None = NotProvided,
        buffer_stride: int = NotProvided,
        inner_buffer_stride: int | None = NotProvided,
        inner_buffer_size: int = NotProvided,
        inner_buffer_position: Position = NotProvided,
        middle_centre: MiddleCentre = NotProvided,
        outer_buffer_size: int = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """Where the data is and how each task's buffers are cut from it (spec §6.2).

        Args:
            root: A root written by `ray-macaw collect` (ROOT/<family>/manifest.json).
            inner_root: Root of the inner (adaptation) and held-out test buffers; None: `root`.
                The authors' `standard_rand_inner` (spec §7.3): random-policy inner data,
                behaviour-policy outer data.
            buffer_stride: Keep every this-many-th transition of each task's buffer.
            inner_buffer_stride: Stride of the inner and test buffers; None: `buffer_stride`.
            inner_buffer_size: Transitions of the inner buffer; -1: all.
            inner_buffer_position: 'start', 'middle' or 'end': where the inner buffer lies.
            middle_centre: 'half' (the true middle) or 'quarter' (the authors' N/4 quirk).
            outer_buffer_size: Transitions of the outer buffer (its last ones); -1: all.
            kwargs: RLlib's `offline_data()` settings.
        """
        super().offline_data(**kwargs)
        return self._apply("offline_data", locals())

    @override(AlgorithmConfig)
    def evaluation(
        self,
        *,
        adaptation_batch_size: int = NotProvided,
        adaptation_batches: int = NotProvided,
        episodes_per_task: int = NotProvided,
        num_cpus_per_task: float = NotProvided,
        at_start: bool = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """RLlib's evaluation settings plus the held-out adaptation protocol (spec §7.1).

        Args:
            adaptation_batch_size: Uniform rows of a held-out task's test buffer to adapt on.
            adaptation_batches: Adaptation batches per held-out task, each adapted to and
                evaluated on its own (the authors: 1); more make the post-adaptation figure
                and its standard error less dependent on which rows were drawn.
            episodes_per_task: Deterministic episodes per held-out task (the authors: 1), from
                the same start states at every evaluation and for every algorithm (paired);
                at least 2 give a standard error.
            num_cpus_per_task: CPUs of each held-out task's evaluation (a Ray task).
            at_start: Also evaluate the untrained model, at meta-step 0, so that learning
                curves start where training starts.
            kwargs: RLlib's `evaluation()` settings (e.g. `evaluation_interval`).
        """
        super().evaluation(**kwargs)
        return self._apply("evaluation", locals())

    @override(AlgorithmConfig)
    def validate(self, check_data: bool = True) -> None:
        """RLlib's checks, then ours, each raising `error` with the fix: the settings
        (`POSITIVE`, `check_settings`), the split, and unless `check_data=False` (a config
        written before its data exists), that the data serves every batch (`batches`)."""
        super().validate()
        for name in self.POSITIVE:
            if not getattr(self, name) > 0:
                raise self.error(
                    f"{name} must be positive, got {getattr(self, name)}",
                    f"set a positive {name} in .training() / .evaluation()",
                )
        non_finite = getattr(self, "non_finite_loss", "skip")  # each algorithm's training setting
        if non_finite not in ("skip", "stop"):
            raise self.error(
                f"unknown non_finite_loss {non_finite!r}",
                "use 'skip' (skip the update and count it) or 'stop' (raise an error)",
            )
        self.check_settings()
        split = resolve_split(self)
        if check_data:
            check_data_serves(self, split, self.batches())

    def check_settings(self) -> None:
        """The algorithm's own checks of its settings."""

    def batches(self) -> dict[str, tuple[str, int]]:
        """Buffer ('inner', 'outer', 'test') -> (the setting that sizes its batch, that size)."""
        raise NotImplementedError

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
