"""`MACAW`, an RLlib Algorithm whose `training_step` is Algorithm 1 (spec §5).

No RLlib Learner, EnvRunner or RLModule: MACAW is offline and its meta-gradient needs second-order
terms RLlib's learners do not give. The model and its three Adam optimisers live in the driver;
meta-gradients come from the driver (vectorised) or from inner-loop worker actors.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.annotations import override
from ray.tune.execution.placement_groups import PlacementGroupFactory

from ray_macaw.algorithms.common import metrics as M
from ray_macaw.algorithms.common.devices import resolve_device, to_cpu
from ray_macaw.algorithms.common.offline_meta import OfflineMetaAlgorithm
from ray_macaw.algorithms.macaw.config import MACAWConfig
from ray_macaw.algorithms.macaw.worker_pool import InnerLoopPool
from ray_macaw.algorithms.macaw.workers import GradientComputer, add_gradients, load_batch_columns
from ray_macaw.data.batches import sample_requests
from ray_macaw.evaluation.finetune import FineTuneActor
from ray_macaw.evaluation.offline import MACAWAdaptation
from ray_macaw.macaw import InnerLoopConfig, MACAWModel
from ray_macaw.macaw.meta_gradient import (
    clip_per_network,
    gradient_norms,
    loss_divisor,
    warn_learned_lrs_without_gradient,
)
from ray_macaw.macaw.model import build_optimizers
from ray_macaw.macaw.objective import AdaptationSettings
from ray_macaw.macaw.objectives import get_objective
from ray_macaw.tasks import get_task_family


@MACAWConfig.builds
class MACAW(OfflineMetaAlgorithm):
    """Meta-Actor Critic with Advantage Weighting (Mitchell et al., ICML 2021)."""

    config: MACAWConfig
    model: MACAWModel
    adaptation = MACAWAdaptation()
    fine_tune_actor = FineTuneActor

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MACAWConfig:
        return MACAWConfig()

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

    def _setup_algorithm(self, cfg: MACAWConfig) -> None:
        manifest = self._open_data(cfg).manifest
        seed = cfg.seed or 0
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        # The multi-task baseline appends a one-hot task id to observations (spec §9).
        num_tasks = get_task_family(cfg.family, seed=cfg.family_seed).num_tasks
        self.one_hot_tasks = num_tasks if get_objective(cfg.objective).one_hot_tasks else 0
        self.model_config = cfg.model_config(
            manifest.obs_dim + self.one_hot_tasks, manifest.act_dim
        )
        self.inner_config = cfg.inner_loop_config()
        # The model and its optimisers live on the configured device (issue 21).
        self.device = resolve_device(cfg.device)
        self.model = MACAWModel(self.model_config).to(self.device)
        self.optimizers = self._build_optimizers(cfg)
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
                    cfg.device,
                    cfg.inner_data_root,
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
                load_batch_columns(cfg.inner_data_root, cfg.family, self.split.train)
                if cfg.inner_data_root
                else None,
            )

    def _build_optimizers(self, cfg: MACAWConfig) -> dict[str, torch.optim.Optimizer]:
        """Spec §5: Adam on phi (1e-5), on theta (1e-4), on the learned lrs and c (1e-3)."""
        return build_optimizers(self.model, cfg.outer_value_lr, cfg.outer_policy_lr, cfg.lrlr)

    @property
    def inner_workers(self) -> list[Any]:
        """The inner-loop worker actors (empty with 0 workers)."""
        return self.pool.workers if self.pool is not None else []

    @override(OfflineMetaAlgorithm)
    def inner_worker_nodes(self) -> list[str]:
        """The node id of each inner-loop worker (empty with 0 workers)."""
        return self.pool.node_ids() if self.pool is not None else []

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
        if self.num_meta_steps == 0:
            warn_learned_lrs_without_gradient(self.model, self.inner_config)
        if self._finite({**stats, **norms}):
            if cfg.grad_clip_norm is not None:
                clip_per_network(self.model, cfg.grad_clip_norm)
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

    def _meta_gradient(self, requests: list, divisor: float) -> dict[str, float]:
        if self.local is not None:
            return self.local.accumulate(requests, divisor)
        assert self.pool is not None
        weights = ray.put(to_cpu(self.model.state_dict()))
        return add_gradients(self.model, self.pool.gradients(weights, requests, divisor))

    @property
    def loss_config(self) -> InnerLoopConfig:
        """How held-out tasks are adapted: the inner-loop settings."""
        return self.inner_config

    @override(OfflineMetaAlgorithm)
    def adaptation_options(
        self, episodes: int | None = None, adaptation_steps: int | None = None
    ) -> dict[str, Any]:
        """How a held-out task is adapted offline (spec §7.1, §7.2)."""
        cfg = self.config
        return {
            "episodes": episodes or cfg.eval_episodes_per_task,
            "batch_size": cfg.eval_adaptation_batch_size,
            "test_buffer": cfg.inner_buffer(),
            "one_hot_tasks": self.one_hot_tasks,
            "test_time": asdict(
                AdaptationSettings(
                    steps=adaptation_steps or cfg.eval_adaptation_steps,
                    finetune_steps=cfg.eval_finetune_steps,
                    finetune_value_lr=cfg.eval_finetune_value_lr,
                    finetune_policy_lr=cfg.eval_finetune_policy_lr,
                )
            ),
        }

    @override(Algorithm)
    def cleanup(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.stop()
        super().cleanup()
