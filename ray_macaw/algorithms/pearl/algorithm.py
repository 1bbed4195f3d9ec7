"""`PEARL`: Offline PEARL (Rakelly et al. 2019, trained on fixed per-task buffers), the
task-inference baseline of MACAW's Fig. 3 and, with online fine-tuning, of appendix C.2 / Table 1.

An RLlib Algorithm on the same `TaskDatasets`, splits, buffer cuts, evaluation protocol,
checkpoints and Tune plumbing as `MACAW`. Each `training_step` is one gradient step on a
meta-batch (`pearl/losses.py`); the networks, their five Adam optimisers and the training tasks'
transitions live in the driver (PEARL has no per-task inner loop to spread over workers).
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import LEARNER_RESULTS, NUM_ENV_STEPS_TRAINED_LIFETIME
from ray.tune.execution.placement_groups import PlacementGroupFactory

from ray_macaw import outputs as O
from ray_macaw.algorithms.common.offline_meta import OfflineMetaAlgorithm
from ray_macaw.algorithms.pearl.config import PEARLConfig
from ray_macaw.data.samplers import uniform_batch
from ray_macaw.evaluation.pearl import PEARLAdaptation, PEARLFineTuneActor
from ray_macaw.pearl import PEARLModel, SACConfig, meta_batch_step
from ray_macaw.pearl.losses import TRANSITION_COLUMNS
from ray_macaw.tasks import get_task_family

LOSSES = "pearl"  # learners/pearl: losses and posterior statistics of each step
# Each optimiser's network in PEARLModel (the "context" optimiser trains the encoder).
OPTIMIZED = {"policy": "policy", "qf1": "qf1", "qf2": "qf2", "vf": "vf", "context": "encoder"}


@PEARLConfig.builds
class PEARL(OfflineMetaAlgorithm):
    """Offline PEARL: context encoder + SAC, trained offline on each task's data."""

    config: PEARLConfig
    model: PEARLModel
    adaptation = PEARLAdaptation()
    fine_tune_actor = PEARLFineTuneActor

    @classmethod
    @override(Algorithm)
    def default_resource_request(cls, config: Any) -> PlacementGroupFactory:
        """Under Tune: the driver (which trains) and an evaluation slot."""
        cfg = cls.config_of(config)
        return PlacementGroupFactory(
            [{"CPU": float(cfg.num_cpus_for_main_process)}, {"CPU": cfg.eval_num_cpus_per_task}],
            strategy=cfg.placement_strategy,
        )

    def _setup_algorithm(self, cfg: PEARLConfig) -> None:
        data = self._open_data(cfg)
        manifest = data.manifest
        # Only the rows of each task's inner and outer buffers are kept (a strided subset), and
        # the buffers become positions into them.
        self.data: dict[int, dict[str, np.ndarray]] = {}
        self.positions: dict[str, dict[int, np.ndarray]] = {"inner": {}, "outer": {}}
        for task_id in self.split.train:
            inner, outer = self.layout.inner[task_id], self.layout.outer[task_id]
            kept = np.union1d(inner, outer)
            columns = data.load(task_id).columns
            self.data[task_id] = {
                c: columns[c][kept].astype(np.float32) for c in TRANSITION_COLUMNS
            }
            self.positions["inner"][task_id] = np.searchsorted(kept, inner)
            self.positions["outer"][task_id] = np.searchsorted(kept, outer)
        pa.default_memory_pool().release_unused()  # Arrow keeps freed read buffers otherwise
        env = get_task_family(cfg.family, seed=cfg.family_seed).make_env(self.split.train[0])
        box = env.action_space  # the networks act in [-1, 1]^d; the model maps to this box
        assert isinstance(box, gym.spaces.Box)
        env.close()  # only its action space was needed
        torch.manual_seed(cfg.seed or 0)
        self.rng = np.random.default_rng(cfg.seed or 0)
        self.model_config = cfg.model_config(
            manifest.obs_dim,
            manifest.act_dim,
            tuple(float(x) for x in box.low),
            tuple(float(x) for x in box.high),
        )
        self.sac_config = cfg.sac_config()
        self.model = PEARLModel(self.model_config)
        self.optimizers = {
            name: torch.optim.Adam(getattr(self.model, OPTIMIZED[name]).parameters(), lr=lr)
            for name, lr in cfg.learning_rates().items()
        }

    def _sample(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(tasks, n, ...) context rows from each sampled task's inner buffer and (tasks, rows,
        ...) SAC rows from its outer buffer, both uniform (PEARL's non-recurrent sampling)."""
        cfg = self.config
        count = min(cfg.task_batch_size, len(self.split.train))
        tasks = sorted(int(t) for t in self.rng.choice(self.split.train, count, replace=False))

        def gather(buffer: str, size: int) -> dict[str, torch.Tensor]:
            rows = {t: uniform_batch(self.positions[buffer][t], size, self.rng) for t in tasks}
            return {
                c: torch.as_tensor(np.stack([self.data[t][c][rows[t]] for t in tasks]))
                for c in TRANSITION_COLUMNS
            }

        return gather("inner", cfg.embedding_batch_size), gather("outer", cfg.batch_size)

    @override(Algorithm)
    def training_step(self) -> None:
        """One PEARL step: posterior per task, then the Q (+ encoder), V and policy updates."""
        start = time.perf_counter()
        contexts, batch = self._sample()
        sampled = time.perf_counter()
        stats, finite = meta_batch_step(
            self.model, self.optimizers, contexts, batch, self.sac_config
        )
        if not finite:  # counted, or raised with non_finite_loss="stop"
            bad = sorted(k for k, v in stats.items() if not np.isfinite(v))
            self._non_finite(", ".join(bad) or "loss")
        self.num_meta_steps += 1
        log = self.metrics.log_value
        for name, value in stats.items():
            log((LEARNER_RESULTS, LOSSES, name), value, reduce="item")
        log((LEARNER_RESULTS, O.TIMINGS, "sample_s"), sampled - start, reduce="item")
        log((LEARNER_RESULTS, O.TIMINGS, "update_s"), time.perf_counter() - sampled, reduce="item")
        rows = batch[TRANSITION_COLUMNS[0]].shape[:2].numel()  # tasks x rows per task
        log(NUM_ENV_STEPS_TRAINED_LIFETIME, rows, reduce="lifetime_sum")
        log(O.META_STEPS, self.num_meta_steps, reduce="item")
        log((LEARNER_RESULTS, O.SKIPPED_STEPS), self.num_skipped_steps, reduce="item")

    @property
    def loss_config(self) -> SACConfig:
        """The SAC settings PEARL + FT fine-tunes with."""
        return self.sac_config

    @override(OfflineMetaAlgorithm)
    def adaptation_options(
        self, episodes: int | None = None, adaptation_steps: int | None = None
    ) -> dict[str, Any]:
        """Task inference from `eval_adaptation_batch_size` uniform test-buffer rows (PEARL has
        no adaptation steps; `adaptation_steps` is accepted for the common interface)."""
        return {
            **self.shared_adaptation_options(episodes),
            "learning_rates": self.config.learning_rates(),  # PEARL + FT updates at these
        }
