"""`OfflineMetaAlgorithm`: the RLlib plumbing MACAW and Offline PEARL share.

Neither uses RLlib's Learners, EnvRunners or RLModules: both train offline on `TaskDatasets`, keep
their networks and optimisers in the driver, evaluate held-out tasks in their own Ray tasks, and
checkpoint plain state. Subclasses provide `_setup_algorithm`, `training_step`,
`adaptation_options` and `loss_config`, and name how a held-out task is adapted to
(`adaptation`) and the actor that fine-tunes one online (`fine_tune_actor`). Subclasses set
`model`, `model_config`, `optimizers` and `rng` in `_setup_algorithm`; checkpoint state and the
held-out tasks' jobs are built from them here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.utils import force_list
from ray.rllib.utils.annotations import override
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from ray_macaw import outputs as O
from ray_macaw.algorithms.common import checkpoints, rllib_internals
from ray_macaw.algorithms.common import metrics as M
from ray_macaw.algorithms.common.config import OfflineMetaConfig
from ray_macaw.algorithms.common.data_checks import resolve_split
from ray_macaw.algorithms.common.devices import to_cpu
from ray_macaw.data.batches import BufferLayout
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import MANIFEST_NAME
from ray_macaw.data.storage import root_path
from ray_macaw.errors import NonFiniteLossError
from ray_macaw.evaluation import held_out
from ray_macaw.evaluation.held_out import Adaptation, HeldOutTask
from ray_macaw.runtime.memory import retain_freed_memory
from ray_macaw.runtime.shared_storage import check_shared


class OfflineMetaAlgorithm(Algorithm):
    """An offline meta-RL Algorithm over `TaskDatasets` (base of `MACAW` and `PEARL`)."""

    config: Any
    metrics: MetricsLogger
    # Set by the subclass's `_setup_algorithm`:
    model: torch.nn.Module
    model_config: Any
    optimizers: dict[str, torch.optim.Optimizer]
    rng: np.random.Generator
    evaluation_config: AlgorithmConfig
    config_class: ClassVar[type]  # set by the config's `builds` decorator
    adaptation: ClassVar[Adaptation]  # how a held-out task is adapted to (evaluation/)
    fine_tune_actor: ClassVar[Any]  # Ray actor class: one held-out task's online fine-tuning

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> Any:
        """A fresh config of this algorithm (the class its `@Config.builds` named)."""
        return cls.config_class()

    @classmethod
    def config_of(cls, config: Any) -> Any:
        """`config` as this algorithm's config object (Tune passes plain dicts)."""
        if isinstance(config, cls.config_class):
            return config
        return cls.get_default_config().update_from_dict(config)

    @classmethod
    @override(Algorithm)
    def _should_create_evaluation_env_runners(cls, eval_config: Any) -> bool:
        # rllib_internals.SHOULD_CREATE_EVALUATION_ENV_RUNNERS: evaluation adapts and rolls out
        # in its own Ray tasks
        return False

    @override(Algorithm)
    def setup(self, config: Any) -> None:
        # Algorithm.setup() always builds a LearnerGroup and EnvRunners; neither is needed here,
        # so only what the rest of Algorithm reads is set (rllib_internals.py).
        cfg = self.config
        retain_freed_memory()  # no page faults on each step's freed tensors (runtime/memory.py)
        self.callbacks = [c() for c in force_list(cfg.callbacks_class)]
        evaluation_config = cfg.get_evaluation_config_object()
        assert evaluation_config is not None
        self.evaluation_config = evaluation_config
        self.evaluation_config.validate()
        self.evaluation_config.freeze()
        rllib_internals.stand_in_for_setup(self)
        self.num_meta_steps = 0
        self.num_skipped_steps = 0
        self.held_out = M.no_held_out_yet()
        self._setup_algorithm(cfg)
        make_callback(
            "on_algorithm_init",
            self.callbacks,
            cfg.callbacks_on_algorithm_init,
            kwargs={"algorithm": self, "metrics_logger": self.metrics},
        )

    def _setup_algorithm(self, cfg: Any) -> None:
        raise NotImplementedError

    def _open_data(self, cfg: OfflineMetaConfig) -> TaskDatasets:
        """Check the data root is shared, resolve the split and lay out the training tasks'
        inner and outer buffers (spec §6.2); the driver holds row positions, not data."""
        assert cfg.data_root is not None  # validate() refuses a config without one
        self.data_root: str = cfg.data_root
        self.inner_data_root: str = cfg.inner_data_root or cfg.data_root  # inner and test buffers
        # Workers and evaluation tasks read the data on any node; nothing is written to it.
        for root in {self.data_root, self.inner_data_root}:
            check_shared(root_path(root) / cfg.family, probe=MANIFEST_NAME)
        self.split = resolve_split(cfg)
        data = TaskDatasets(self.data_root, cfg.family)
        inner = TaskDatasets(self.inner_data_root, cfg.family)
        self.layout = BufferLayout.build(
            {t: data.task_record(t).rows for t in self.split.train},
            cfg.inner_buffer(),
            cfg.outer_buffer(),
            {t: inner.task_record(t).rows for t in self.split.train},
        )
        # Which bytes this run learns from: outer buffers from `data_root`, inner and test
        # buffers from the inner root (a record refuses to mix trials on other data).
        read = {*self.split.train, *self.split.test}
        self.data_fingerprint = (
            data.fingerprint(read)
            if self.inner_data_root == self.data_root
            else data.fingerprint(self.split.train) + "+" + inner.fingerprint(read)
        )
        return data

    def inner_worker_nodes(self) -> list[str]:
        """The node id of each worker actor the algorithm trains with (none by default)."""
        return []

    @override(Algorithm)
    def step(self) -> dict[str, Any]:
        """RLlib's step, plus `held_out`: the latest evaluation's means (see metrics.HELD_OUT),
        the data's fingerprint (`TaskDatasets.fingerprint`), and before the first meta-step an
        evaluation of the untrained model (`metrics.EVALUATION_AT_START`, with `eval_at_start`
        and evaluation on)."""
        at_start = None
        if (
            self.num_meta_steps == 0
            and self.config.evaluation_interval
            and self.config.eval_at_start
        ):
            at_start = self.evaluate_held_out()
            self.held_out = {k: at_start[k] for k in O.HELD_OUT_KEYS} | {"meta_step": 0}
        results = super().step()
        if at_start is not None:
            results[O.EVALUATION_AT_START] = at_start
        evaluation = results.get("evaluation") or {}
        if O.HELD_OUT_KEYS[1] in evaluation:
            self.held_out = {k: evaluation[k] for k in O.HELD_OUT_KEYS}
            self.held_out["meta_step"] = self.num_meta_steps
        results[O.HELD_OUT] = dict(self.held_out)
        results[O.DATA_FINGERPRINT] = self.data_fingerprint
        return results

    def _finite(self, values: Mapping[str, float]) -> bool:
        """False (update skipped and counted) for a non-finite loss or gradient; with
        `non_finite_loss="stop"`, an error instead."""
        if np.isfinite(list(values.values())).all():
            return True
        bad = sorted(k for k, v in values.items() if not np.isfinite(v))
        return self._non_finite(", ".join(bad))

    def _non_finite(self, what: str) -> bool:
        """Count a skipped update, or raise with `non_finite_loss="stop"`; returns False."""
        if self.config.non_finite_loss == "stop":
            raise NonFiniteLossError(
                f"non-finite {what} at meta-step {self.num_meta_steps + 1}",
                "lower the learning rates, check the data (ray-macaw dataset inspect), or set "
                "non_finite_loss='skip' to skip such steps; resume from the last checkpoint",
            )
        self.num_skipped_steps += 1
        return False

    @override(Algorithm)
    def evaluate(self, parallel_train_future: Any = None) -> dict[str, Any]:
        """Spec §7.1 on every held-out task, in parallel; the result lands under `evaluation`."""
        return self.evaluate_held_out()

    def evaluate_held_out(
        self, episodes: int | None = None, adaptation_steps: int | None = None
    ) -> dict[str, Any]:
        """Pre- and post-adaptation returns per held-out task (options override the config)."""
        remote = held_out.evaluate_task_remote.options(num_cpus=self.config.eval_num_cpus_per_task)
        options = self.adaptation_options(episodes, adaptation_steps)
        futures = [
            remote.remote(task, weights, self.adaptation)
            for task, weights in self.held_out_arguments(options)
        ]
        return held_out.summarise(ray.get(futures))

    def adaptation_options(
        self, episodes: int | None = None, adaptation_steps: int | None = None
    ) -> dict[str, Any]:
        """How a held-out task is adapted offline (spec §7.1, §7.2): `shared_adaptation_options`
        plus the algorithm's own."""
        raise NotImplementedError

    def shared_adaptation_options(self, episodes: int | None = None) -> dict[str, Any]:
        """Episodes, adaptation batch size and count, and the test-buffer cut (both algorithms)."""
        cfg = self.config
        return {
            "episodes": episodes or cfg.eval_episodes_per_task,
            "batch_size": cfg.eval_adaptation_batch_size,
            "batches": cfg.eval_adaptation_batches,
            "test_buffer": cfg.inner_buffer(),
        }

    @property
    def loss_config(self) -> Any:
        """The loss settings held-out tasks are adapted or fine-tuned with."""
        raise NotImplementedError

    def held_out_arguments(self, options: dict[str, Any]) -> list[tuple[HeldOutTask, Any]]:
        """Per held-out task, its job (with the task's seed in `options`) and a reference to
        the weights, which go to the object store once, on the CPU."""
        weights = ray.put(to_cpu(self.model.state_dict()))
        cfg = self.config
        tasks = [
            HeldOutTask(
                model_config=self.model_config,
                loss_config=self.loss_config,
                root=self.inner_data_root,  # test buffers are cut like the inner ones (§6.2)
                family=cfg.family,
                family_seed=cfg.family_seed,
                task_id=task_id,
                options=options | {"seed": self._evaluation_seed(task_id)},
            )
            for task_id in self.split.test
        ]
        return [(task, weights) for task in tasks]

    def _evaluation_seed(self, task_id: int) -> int:
        """Seed of a task's adaptation batches and episodes: the run's seed and the task's,
        never the meta-step, so that every evaluation of a run, and every algorithm run with
        that seed, adapts on the same rows and starts from the same states (paired figures)."""
        return held_out.evaluation_seed(self.config.seed or 0, task_id)

    @override(Algorithm)
    def get_state(
        self, components: Any = None, *, not_components: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Networks (with MACAW's learned lrs and lambda, PEARL's target V), optimisers, RNG
        states, step counts, and a stamp of what wrote them. Tensors are saved on the CPU, so a
        checkpoint loads on either device (`load_state_dict` copies onto the model's)."""
        return {
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {
                k: to_cpu(copy.deepcopy(o.state_dict())) for k, o in self.optimizers.items()
            },
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "num_meta_steps": self.num_meta_steps,
            "num_skipped_steps": self.num_skipped_steps,
            "held_out": dict(self.held_out),
            "metrics_logger": self.metrics.get_state(),
            "training_iteration": self.training_iteration,
            "stamp": checkpoints.stamp(self),
        }

    @override(Algorithm)
    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of `get_state`; refuses state of another algorithm, family, shape or newer
        format (older MACAW checkpoints lack the skip count and held-out figures)."""
        checkpoints.check_compatible(state.get("stamp"), self)
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.num_meta_steps = state["num_meta_steps"]
        self.held_out = state.get("held_out", M.no_held_out_yet())
        self.num_skipped_steps = state.get("num_skipped_steps", 0)
        self.metrics.set_state(state["metrics_logger"])
        rllib_internals.set_iteration(self, state["training_iteration"])

    @override(Algorithm)
    def get_checkpointable_components(self) -> list:
        return []

    @override(Algorithm)
    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        # Algorithm's own version restores EnvRunners, which these algorithms do not have.
        Checkpointable.restore_from_path(self, path, *args, **kwargs)
