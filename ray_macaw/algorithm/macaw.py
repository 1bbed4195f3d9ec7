"""`MACAW`, an RLlib Algorithm whose `training_step` is Algorithm 1 (spec §5).

No RLlib Learner, EnvRunner or RLModule: MACAW is offline and its meta-gradient needs second-order
terms RLlib's learners do not give. The model and its three Adam optimisers live in the driver;
meta-gradients come from the driver (vectorised) or from inner-loop worker actors.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from ray.tune.execution.placement_groups import PlacementGroupFactory

from ray_macaw.algorithm import checkpoints
from ray_macaw.algorithm import evaluation as ev
from ray_macaw.algorithm import metrics as M
from ray_macaw.algorithm.batches import BufferLayout, sample_requests
from ray_macaw.algorithm.config import MACAWConfig
from ray_macaw.algorithm.validation import resolve_split
from ray_macaw.algorithm.worker_pool import InnerLoopPool
from ray_macaw.algorithm.workers import GradientComputer, add_gradients, load_batch_columns
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import MANIFEST_NAME
from ray_macaw.errors import NonFiniteLossError
from ray_macaw.macaw import MACAWModel
from ray_macaw.macaw.meta_gradient import gradient_norms, loss_divisor
from ray_macaw.shared_storage import check_shared
from ray_macaw.tasks import get_task_family


class MACAW(Algorithm):
    """Meta-Actor Critic with Advantage Weighting (Mitchell et al., ICML 2021)."""

    config: MACAWConfig
    metrics: MetricsLogger
    evaluation_config: AlgorithmConfig

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MACAWConfig:
        return MACAWConfig()

    @classmethod
    @override(Algorithm)
    def _should_create_evaluation_env_runners(cls, eval_config: Any) -> bool:
        return False  # evaluation adapts and rolls out in its own Ray tasks

    @classmethod
    @override(Algorithm)
    def default_resource_request(cls, config: Any) -> PlacementGroupFactory:
        """Under Tune, one placement group per trial: the driver, its inner-loop workers and an
        evaluation slot, so evaluation tasks never wait on CPUs other trials hold."""
        cfg = (
            config
            if isinstance(config, MACAWConfig)
            else cls.get_default_config().update_from_dict(config)
        )
        worker: dict[str, float] = {
            "CPU": cfg.num_cpus_per_inner_worker,
            "GPU": cfg.num_gpus_per_inner_worker,
        }
        bundles: list[dict[str, float]] = [{"CPU": float(cfg.num_cpus_for_main_process)}]
        bundles += [worker] * cfg.num_inner_loop_workers
        bundles.append({"CPU": cfg.eval_num_cpus_per_task})
        return PlacementGroupFactory(bundles, strategy=cfg.placement_strategy)

    @override(Algorithm)
    def setup(self, config: Any) -> None:
        # Algorithm.setup() always builds a LearnerGroup and EnvRunners; MACAW needs neither, so
        # only the attributes the base class reads are set here (stack-notes, pattern A).
        cfg = self.config
        self.callbacks = [c() for c in force_list(cfg.callbacks_class)]
        self.local_replay_buffer = None
        self.remote_requests_in_flight = defaultdict(set)
        self.env_runner_group = self.eval_env_runner_group = None
        self.offline_eval_runner_group = self.offline_data = None  # type: ignore[assignment]
        self.spaces = self.env_to_module_connector = self.module_to_env_connector = None
        self.learner_group = self._aggregator_actor_manager = None
        evaluation_config = cfg.get_evaluation_config_object()
        assert evaluation_config is not None
        self.evaluation_config = evaluation_config
        self.evaluation_config.validate()
        self.evaluation_config.freeze()
        self.evaluation_dataset = None
        self.reward_estimators = {}
        self._set_up_metrics()
        self._setup_macaw(cfg)
        make_callback(
            "on_algorithm_init",
            self.callbacks,
            cfg.callbacks_on_algorithm_init,
            kwargs={"algorithm": self, "metrics_logger": self.metrics},
        )

    def _setup_macaw(self, cfg: MACAWConfig) -> None:
        assert cfg.data_root is not None  # validate() refuses a config without one
        self.data_root: str = cfg.data_root
        # Workers and evaluation tasks read the data on any node; nothing is written to it.
        check_shared(Path(self.data_root) / cfg.family, probe=MANIFEST_NAME)
        self.split = resolve_split(cfg)
        data = TaskDatasets(self.data_root, cfg.family)
        manifest = data.manifest
        rows = {t: data.task_record(t).rows for t in self.split.train}
        self.layout = BufferLayout.build(rows, cfg.inner_buffer(), cfg.outer_buffer())
        seed = cfg.seed or 0
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        # The multi-task baseline appends a one-hot task id to observations (spec §9).
        num_tasks = get_task_family(cfg.family, seed=cfg.family_seed).num_tasks
        self.one_hot_tasks = num_tasks if cfg.objective == "multitask" else 0
        self.model_config = cfg.model_config(
            manifest.obs_dim + self.one_hot_tasks, manifest.act_dim
        )
        self.inner_config = cfg.inner_loop_config()
        self.model = MACAWModel(self.model_config)
        self.optimizers = self._build_optimizers(cfg)
        self.num_meta_steps = 0
        self.held_out = M.no_held_out_yet()
        self.num_skipped_steps = 0
        self.pool: InnerLoopPool | None = None
        self.local = None
        if cfg.num_inner_loop_workers:
            self.pool = InnerLoopPool(
                cfg,
                self.split.train,
                (
                    self.model_config,
                    self.inner_config,
                    cfg.vectorize,
                    int(cfg.num_cpus_per_inner_worker),
                    self.one_hot_tasks,
                ),
                cfg.max_inner_worker_restarts,
            )
        else:
            self.local = GradientComputer(
                self.model,
                load_batch_columns(self.data_root, cfg.family, self.split.train),
                self.inner_config,
                cfg.vectorize,
                self.one_hot_tasks,
            )

    def _build_optimizers(self, cfg: MACAWConfig) -> dict[str, torch.optim.Adam]:
        """Spec §5: Adam on phi (1e-5), on theta (1e-4), on the learned lrs and c (1e-3)."""
        learned = [*self.model.value_lr.parameters(), *self.model.policy_lr.parameters()]
        if self.model.adv_coef_raw is not None:
            learned.append(self.model.adv_coef_raw)
        return {
            "value": torch.optim.Adam(self.model.value.parameters(), lr=cfg.outer_value_lr),
            "policy": torch.optim.Adam(self.model.policy.parameters(), lr=cfg.outer_policy_lr),
            "learned": torch.optim.Adam(learned, lr=cfg.lrlr),
        }

    @property
    def inner_workers(self) -> list[Any]:
        """The inner-loop worker actors (empty with 0 workers)."""
        return self.pool.workers if self.pool is not None else []

    def inner_worker_nodes(self) -> list[str]:
        """The node id of each inner-loop worker (empty with 0 workers)."""
        return self.pool.node_ids() if self.pool is not None else []

    @override(Algorithm)
    def step(self) -> dict[str, Any]:
        """RLlib's step, plus `held_out`: the latest evaluation's means (see metrics.HELD_OUT)."""
        results = super().step()
        evaluation = results.get("evaluation") or {}
        if M.HELD_OUT_KEYS[1] in evaluation:
            self.held_out = {k: evaluation[k] for k in M.HELD_OUT_KEYS}
            self.held_out["meta_step"] = self.num_meta_steps
        results[M.HELD_OUT] = dict(self.held_out)
        return results

    @override(Algorithm)
    def training_step(self) -> None:
        """Alg. 1: sample tasks and batches, meta-gradient, Adam steps on phi, theta, rho, c."""
        cfg = self.config
        start = time.perf_counter()
        requests = sample_requests(
            self.layout,
            self.split.train,
            cfg.task_batch_size,  # Alg. 1 L3-L5
            cfg.inner_batch_size,
            cfg.outer_batch_size,
            self.rng,
        )
        divisor = loss_divisor(cfg.loss_scale, len(self.split.train), len(requests))
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        sampled = time.perf_counter()
        stats = self._meta_gradient(requests, divisor)  # Alg. 1 L6-L12
        computed = time.perf_counter()
        norms = gradient_norms(self.model)
        if self._finite(stats, norms):
            if cfg.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
            for opt in self.optimizers.values():  # Alg. 1 L13-L14
                opt.step()
        self.num_meta_steps += 1
        timings = {
            "sample_s": sampled - start,
            "meta_gradient_s": computed - sampled,
            "optimizer_s": time.perf_counter() - computed,
        }
        M.log_step(
            self.metrics,
            stats,
            norms,
            self.model,
            timings,
            rows=len(requests) * (cfg.inner_batch_size + cfg.outer_batch_size),
            meta_steps=self.num_meta_steps,
            skipped=self.num_skipped_steps,
        )

    def _finite(self, stats: Mapping[str, float], norms: Mapping[str, float]) -> bool:
        """False (update skipped and counted) for a non-finite loss or gradient; with
        `non_finite_loss="stop"`, an error instead."""
        if np.isfinite([*stats.values(), *norms.values()]).all():
            return True
        bad = sorted(k for k, v in {**stats, **norms}.items() if not np.isfinite(v))
        if self.config.non_finite_loss == "stop":
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} at meta-step {self.num_meta_steps + 1}",
                "lower the learning rates, check the data (ray-macaw dataset inspect), or set "
                "non_finite_loss='skip' to skip such steps; resume from the last checkpoint",
            )
        self.num_skipped_steps += 1
        return False

    def _meta_gradient(self, requests: list, divisor: float) -> dict[str, float]:
        if self.local is not None:
            return self.local.accumulate(requests, divisor)
        assert self.pool is not None
        weights = ray.put({k: v.detach() for k, v in self.model.state_dict().items()})
        return add_gradients(self.model, self.pool.gradients(weights, requests, divisor))

    @override(Algorithm)
    def evaluate(self, parallel_train_future: Any = None) -> dict[str, Any]:
        """Spec §7.1 on every held-out task, in parallel; the result lands under `evaluation`."""
        return self.evaluate_held_out()

    def evaluate_held_out(
        self, episodes: int | None = None, adaptation_steps: int | None = None
    ) -> dict[str, Any]:
        """Pre- and post-adaptation returns per held-out task (options override the config)."""
        remote = ev.evaluate_task_remote.options(num_cpus=self.config.eval_num_cpus_per_task)
        options = self.adaptation_options(episodes, adaptation_steps)
        futures = [remote.remote(*args) for args in self.held_out_arguments(options)]
        return ev.summarise(ray.get(futures))

    def adaptation_options(
        self, episodes: int | None = None, adaptation_steps: int | None = None
    ) -> dict[str, Any]:
        """How a held-out task is adapted offline (spec §7.1, §7.2)."""
        cfg = self.config
        return {
            "episodes": episodes or cfg.eval_episodes_per_task,
            "batch_size": cfg.eval_adaptation_batch_size,
            "test_buffer": cfg.inner_buffer(),
            "adaptation_steps": adaptation_steps or cfg.eval_adaptation_steps,
            "one_hot_tasks": self.one_hot_tasks,
            "finetune_steps": cfg.eval_finetune_steps,
            "finetune_value_lr": cfg.eval_finetune_value_lr,
            "finetune_policy_lr": cfg.eval_finetune_policy_lr,
        }

    def held_out_arguments(self, options: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Per held-out task: (model config, inner config, weights, root, family, family seed,
        task id, options with the task's seed), for the Ray tasks and actors that adapt to it.
        The weights go to the object store once."""
        weights = ray.put({k: v.detach() for k, v in self.model.state_dict().items()})
        cfg = self.config
        return [
            (
                self.model_config,
                self.inner_config,
                weights,
                self.data_root,
                cfg.family,
                cfg.family_seed,
                task_id,
                options | {"seed": self._evaluation_seed(task_id)},
            )
            for task_id in self.split.test
        ]

    def _evaluation_seed(self, task_id: int) -> int:
        """Seed of a task's adaptation batch and episodes at this meta-step."""
        seeds = np.random.SeedSequence([self.config.seed or 0, self.num_meta_steps, task_id])
        return int(seeds.generate_state(1)[0] % 2**31)

    @override(Algorithm)
    def get_checkpointable_components(self) -> list:
        return []

    @override(Algorithm)
    def get_state(
        self, components: Any = None, *, not_components: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Networks, optimisers, learned lrs and lambda, RNG states, step counts."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()},
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
        """Inverse of `get_state`; refuses state of another family, shape or newer format."""
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
        self._iteration = state["training_iteration"]

    @override(Algorithm)
    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        # Algorithm's own version restores EnvRunners, which MACAW does not have.
        Checkpointable.restore_from_path(self, path, *args, **kwargs)

    @override(Algorithm)
    def cleanup(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.stop()
        super().cleanup()
