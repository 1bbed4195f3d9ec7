"""`MACAW`, an RLlib Algorithm whose `training_step` is Algorithm 1 (spec §5).

No RLlib Learner, EnvRunner or RLModule: MACAW is offline and its meta-gradient needs second-order
terms RLlib's learners do not give. With 0 workers the model and its three Adam optimisers live
in the driver, which computes the step vectorised; with N workers they are data-parallel replicas
that all-reduce their gradients and step alike (issue 16), and the driver's copy is rank 0's,
fetched when read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.annotations import override
from ray.tune.execution.placement_groups import PlacementGroupFactory

from ray_macaw.algorithms.common import metrics as M
from ray_macaw.algorithms.common.devices import resolve_device
from ray_macaw.algorithms.common.offline_meta import OfflineMetaAlgorithm
from ray_macaw.algorithms.common.replicas import load_training_state, training_state
from ray_macaw.algorithms.macaw.config import MACAWConfig
from ray_macaw.algorithms.macaw.worker_pool import InnerLoopPool
from ray_macaw.algorithms.replica.workers import (
    GradientComputer,
    ReplicaSettings,
    add_adam_step,
    combine_stats,
    load_held_task,
    local_computer,
)
from ray_macaw.data.batches import sample_requests
from ray_macaw.data.held import BufferSources, load_tasks
from ray_macaw.evaluation.finetune import FineTuneActor
from ray_macaw.evaluation.offline import MACAWAdaptation
from ray_macaw.macaw import InnerLoopConfig, MACAWModel
from ray_macaw.macaw.meta_gradient import (
    gradient_norms,
    loss_divisor,
    warn_learned_lrs_without_gradient,
)
from ray_macaw.macaw.model import build_optimizers
from ray_macaw.macaw.objective import AdaptationSettings
from ray_macaw.macaw.objectives import get_objective
from ray_macaw.tasks import get_task_family

# (mean stats, gradient norms, learned inner lrs, lambda) of one meta-step, for the metrics.
StepFigures = tuple[
    dict[str, float], Mapping[str, float], dict[str, dict[str, float]], float | None
]


@MACAWConfig.builds
class MACAW(OfflineMetaAlgorithm):
    """Meta-Actor Critic with Advantage Weighting (Mitchell et al., ICML 2021)."""

    config: MACAWConfig
    adaptation = MACAWAdaptation()
    fine_tune_actor = FineTuneActor

    @classmethod
    @override(Algorithm)
    def default_resource_request(cls, config: Any) -> PlacementGroupFactory:
        """Under Tune, one placement group per trial: the driver, its inner-loop workers and an
        evaluation slot, so evaluation tasks never wait on CPUs other trials hold."""
        cfg = cls.config_of(config)
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
        # The driver's model and optimisers live on the configured device (issue 21); with
        # replicas they are rank 0's, fetched when read (`model`, `optimizers`).
        self.device = resolve_device(cfg.device)
        self._model = MACAWModel(self.model_config).to(self.device)
        self._optimizers = build_optimizers(self._model, *self._settings(cfg).learning_rates)
        self.pool: InnerLoopPool | None = None
        self.local: GradientComputer | None = None
        self._stale = False
        sources = BufferSources(
            self.data_root, cfg.family, cfg.inner_buffer(), cfg.outer_buffer(), cfg.inner_data_root
        )
        if cfg.num_inner_loop_workers:
            self.held_bytes, held = self._load_held(cfg, sources)
            state = training_state(self._model, self._optimizers)
            self.pool = InnerLoopPool(cfg, held, self._settings(cfg), state)
        else:
            local = load_tasks(sources, list(self.split.train))
            self.held_bytes = sum(h.nbytes for h in local.values())
            self.local = local_computer(self._model, local, self._settings(cfg))

    def _settings(self, cfg: MACAWConfig) -> ReplicaSettings:
        """Spec §5: Adam on phi (1e-5), on theta (1e-4), on the learned lrs and c (1e-3)."""
        return ReplicaSettings(
            self.model_config,
            self.inner_config,
            cfg.vectorize,
            int(cfg.num_cpus_per_inner_worker),
            self.one_hot_tasks,
            cfg.device,
            (cfg.outer_value_lr, cfg.outer_policy_lr, cfg.lrlr),
            cfg.grad_clip_norm,
        )

    def _load_held(
        self, cfg: MACAWConfig, sources: BufferSources
    ) -> tuple[int, dict[int, ray.ObjectRef]]:
        """Each training task's held buffers, loaded in Ray tasks into the object store (the
        replicas map them; the driver never fetches the rows); returns their bytes too. The
        loads finish before the replicas start, which would otherwise hold the CPUs they need."""
        load = load_held_task.options(num_cpus=cfg.num_cpus_per_inner_worker)
        # Two returns each (num_returns=2): the held task and its size.
        refs: dict[int, Any] = {t: load.remote(sources, t) for t in self.split.train}
        sizes = ray.get([size for _, size in refs.values()])
        return sum(sizes), {t: held for t, (held, _) in refs.items()}

    @property
    def model(self) -> MACAWModel:  # type: ignore[override]
        """The model; with replicas, rank 0's weights and gradients, fetched when read after
        a meta-step (evaluation, checkpoints), so no weights travel per step."""
        self._sync()
        return self._model

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:  # type: ignore[override]
        """The three Adam optimisers; with replicas, rank 0's state, fetched like `model`."""
        self._sync()
        return self._optimizers

    def _sync(self) -> None:
        if self.pool is not None and self._stale:
            load_training_state(self._model, self._optimizers, self.pool.pull())
            self._stale = False

    @property
    def inner_workers(self) -> list[Any]:
        """The inner-loop replica actors, rank 0 first (empty with 0 workers)."""
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
        sampled = time.perf_counter()
        if self.pool is not None:
            stats, norms, lrs, coef = self._replica_step(requests, divisor)  # Alg. 1 L6-L14
        else:
            stats, norms, lrs, coef = self._local_step(requests, divisor)
        self.num_meta_steps += 1
        timings = {"sample_s": sampled - start, "update_s": time.perf_counter() - sampled}
        M.log_step(
            self.metrics,
            stats,
            norms,
            lrs,
            coef,
            timings,
            rows=len(requests) * (cfg.inner_batch_size + cfg.outer_batch_size),
            meta_steps=self.num_meta_steps,
            skipped=self.num_skipped_steps,
        )

    def _local_step(self, requests: list, divisor: float) -> StepFigures:
        """The whole step in the driver, vectorised across tasks."""
        assert self.local is not None
        for opt in self._optimizers.values():
            opt.zero_grad(set_to_none=True)
        stats = self.local.accumulate(requests, divisor)  # Alg. 1 L6-L12
        norms = gradient_norms(self._model)
        if self.num_meta_steps == 0:
            warn_learned_lrs_without_gradient(self._model, self.inner_config)
        if self._finite({**stats, **norms}):
            add_adam_step(self._model, self._optimizers, self.config.grad_clip_norm)
        return stats, norms, self._model.inner_lrs(), self._model.adv_coef()

    def _replica_step(self, requests: list, divisor: float) -> StepFigures:
        """Each replica computes its share, all-reduces and steps (or all skip, alike)."""
        assert self.pool is not None
        results = self.pool.step(requests, divisor, first=self.num_meta_steps == 0)
        self._stale = True
        stats, rank0 = combine_stats(results), results[0]
        # The replicas skipped a non-finite step; count it (or stop) as the driver does.
        stepped = self._finite({**stats, **rank0.norms})
        assert stepped == rank0.stepped, "replicas and driver disagree on a non-finite step"
        return stats, rank0.norms, rank0.inner_lrs, rank0.adv_coef

    @override(OfflineMetaAlgorithm)
    def set_state(self, state: dict[str, Any]) -> None:
        """`OfflineMetaAlgorithm.set_state`, then the replicas load the restored state."""
        self._stale = False  # what rank 0 holds is about to be replaced
        super().set_state(state)
        if self.pool is not None:
            self.pool.push(training_state(self._model, self._optimizers))

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
            **self.shared_adaptation_options(episodes),
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
