"""`MACAWConfig`: every MACAW hyperparameter, documented once, with spec §10 defaults."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.utils.annotations import override

from ray_macaw.algorithms.common.config import DATA, ENVIRONMENT, OfflineMetaConfig
from ray_macaw.macaw import InnerLoopConfig, LossScale, ModelConfig
from ray_macaw.macaw.inner_loop import ObjectiveName
from ray_macaw.macaw.model import Adapt
from ray_macaw.macaw.objectives import get_objective
from ray_macaw.nn import LayerKind

# MACAW's settings beyond the shared ENVIRONMENT and DATA (config_base.py), with their defaults
# (spec §10, appendix Table 4).
TRAINING = {
    "task_batch_size": 5,  # tasks per meta-step (Table 4 "task batch size")
    "inner_batch_size": 256,  # contiguous rows per inner batch (spec §4.2)
    "outer_batch_size": 256,  # uniform rows per outer batch
    "inner_steps": 1,  # inner SGD steps; the inner batch is split across them
    "first_order": False,  # drop second-order terms (MACAW is second order)
    "outer_value_lr": 1e-5,  # Adam lr of the value network (phi)
    "outer_policy_lr": 1e-4,  # Adam lr of the policy (theta), incl. the advantage head
    "lrlr": 1e-3,  # Adam lr of the learned inner lrs (rho) and of c (lambda = softplus(c))
    "inner_policy_lr": 1e-3,  # initial inner policy lr (learned, softplus(log lr))
    "inner_value_lr": 1e-3,  # initial inner value lr (learned)
    "adv_coef": 0.01,  # initial lambda, the advantage-head loss coefficient (learned)
    # The next three: None takes the objective's network (objective.network): weight transform
    # with the head for MACAW; no head for MAML+AWR and Meta-BC; bias transform, no head, for
    # the multi-task baseline (spec §9).
    "advantage_head": None,  # policy advantage head + its inner loss (spec §1.2)
    "policy_layer": None,  # weight_transform / bias_transform / linear
    "value_layer": None,
    "hidden": (100, 100, 100),  # hidden widths of both networks
    "latent_dim": 100,  # latent size c of weight-transform layers
    "temperature": 1.0,  # AWR temperature T
    "max_weight": 20.0,  # largest AWR weight (clip at ln 20)
    "normalize_advantages": True,  # per-batch advantage normalisation (unbiased std)
    "target_mix": 0.9,  # phi_bar = 0.9 phi + 0.1 phi' (outer value target)
    "outer_value_target": "bootstrap",  # 'bootstrap' (authors) or 'mc' (paper)
    # 'macaw', 'maml_awr' (no advantage head), 'meta_bc' or 'multitask' (the baselines, §9):
    # training losses, test-time adaptation and fine-tuning updates (macaw/objectives.py)
    "objective": "macaw",
    "loss_scale": "num_train_tasks",  # divide the meta-loss by N_train (authors) or task batch
    "adapt": "all",  # adapt every tensor (authors) or only the latents ('latent')
    "low_rank_wt": True,  # closed-form low-rank weight-transform inner step (exact, faster)
    "vectorize": True,  # vmap across tasks (else a per-task loop; same gradient)
    "grad_clip_norm": None,  # the authors' 1e9 clip never bites: no clipping by default
    "non_finite_loss": "skip",  # non-finite loss or gradient: 'skip' the update (counted), 'stop'
    # where the model, optimisers and batches live, in the driver and in inner-loop workers:
    # 'auto' (CUDA when Ray gave the process a GPU), 'cpu' or 'cuda' (see algorithm/devices.py)
    "device": "auto",
}
WORKERS = {
    "num_inner_loop_workers": 0,
    "num_cpus_per_inner_worker": 1.0,
    "num_gpus_per_inner_worker": 0.0,
    "max_inner_worker_restarts": 3,  # dead workers replaced (their step retried) per run
}
EVALUATION = {
    "eval_adaptation_batch_size": 256,  # uniform rows of a test task's data to adapt on
    "eval_adaptation_steps": 1,  # test-time adaptation steps (the authors: 1)
    "eval_episodes_per_task": 1,  # deterministic episodes per held-out task (the authors: 1)
    "eval_num_cpus_per_task": 1.0,  # CPUs of each held-out task's evaluation (a Ray task)
    "eval_at_start": True,  # also evaluate the untrained model, at meta-step 0 (spec §7.1)
    "eval_finetune_steps": 20,  # multitask baseline: Adam fine-tuning steps at test time (§7.2)
    "eval_finetune_value_lr": 1e-5,
    "eval_finetune_policy_lr": 1e-3,
}
# Appendix Table 4: the standard column is the defaults above; the Meta-World column differs here.
PRESETS: dict[str, dict[str, Any]] = {
    "standard": {},
    "ml45": {
        "adv_coef": 1e-3,
        "outer_value_lr": 1e-6,
        "inner_policy_lr": 1e-2,
        "inner_value_lr": 1e-4,
        "hidden": (300, 300, 300),
        "task_batch_size": 10,
    },
}


class MACAWConfig(OfflineMetaConfig):
    """Configuration of `MACAW`: the fluent builder over the settings above.

    Example:
        config = (MACAWConfig()
                  .environment(family="cheetah-vel", split="default")
                  .offline_data(root="/data/macaw")
                  .training(task_batch_size=5, outer_policy_lr=1e-4)
                  .inner_loop_workers(num_workers=2))
        algo = config.build_algo()
    """

    GROUPS: ClassVar[dict[str, dict[str, Any]]] = {
        "environment": ENVIRONMENT,
        "data": DATA,
        "training": TRAINING,
        "workers": WORKERS,
        "evaluation": EVALUATION,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    # Declared for type checkers; meanings and defaults are in the dicts above.
    task_batch_size: int
    inner_batch_size: int
    outer_batch_size: int
    inner_steps: int
    first_order: bool
    outer_value_lr: float
    outer_policy_lr: float
    lrlr: float
    inner_policy_lr: float
    inner_value_lr: float
    adv_coef: float
    advantage_head: bool | None
    hidden: tuple[int, ...]
    policy_layer: LayerKind | None
    value_layer: LayerKind | None
    latent_dim: int
    temperature: float
    max_weight: float
    normalize_advantages: bool
    target_mix: float
    outer_value_target: Literal["bootstrap", "mc"]
    objective: ObjectiveName
    loss_scale: LossScale
    adapt: Adapt
    low_rank_wt: bool
    vectorize: bool
    grad_clip_norm: float | None
    non_finite_loss: Literal["skip", "stop"]
    device: Literal["auto", "cpu", "cuda"]
    num_inner_loop_workers: int
    num_cpus_per_inner_worker: float
    num_gpus_per_inner_worker: float
    max_inner_worker_restarts: int
    eval_adaptation_steps: int
    eval_finetune_steps: int
    eval_finetune_value_lr: float
    eval_finetune_policy_lr: float

    def __init__(self, algo_class: type | None = None) -> None:
        from ray_macaw.algorithms.macaw.algorithm import MACAW

        super().__init__(algo_class=algo_class or MACAW)

    def inner_loop_workers(
        self,
        *,
        num_workers: Any = NotProvided,
        num_cpus_per_worker: Any = NotProvided,
        num_gpus_per_worker: Any = NotProvided,
        max_restarts: Any = NotProvided,
    ) -> MACAWConfig:
        """Ray actors computing per-task meta-gradients (0: the driver does it, vectorised)."""
        return self._set(
            "workers",
            {
                "num_inner_loop_workers": num_workers,
                "num_cpus_per_inner_worker": num_cpus_per_worker,
                "num_gpus_per_inner_worker": num_gpus_per_worker,
                "max_inner_worker_restarts": max_restarts,
            },
        )

    @override(AlgorithmConfig)
    def validate(self, check_data: bool = True) -> None:
        """RLlib's checks, then MACAW's, each with the fix (see `validation.py`); with
        `check_data=False`, the settings alone (the data need not exist yet)."""
        super().validate()
        from ray_macaw.algorithms.macaw.validation import validate_macaw_config

        validate_macaw_config(self, check_data)

    def network(self) -> dict[str, Any]:
        """Layer kinds and advantage head: the settings, else the objective's (spec §9)."""
        defaults = get_objective(self.objective).network
        return {k: defaults[k] if getattr(self, k) is None else getattr(self, k) for k in defaults}

    def model_config(self, obs_dim: int, act_dim: int) -> ModelConfig:
        """The networks and learned inner-loop hyperparameters."""
        return ModelConfig(
            obs_dim=obs_dim,
            act_dim=act_dim,
            hidden=tuple(self.hidden),
            latent_dim=self.latent_dim,
            **self.network(),
            inner_policy_lr=self.inner_policy_lr,
            inner_value_lr=self.inner_value_lr,
            adv_coef=self.adv_coef,
            adapt=self.adapt,
        )

    def inner_loop_config(self) -> InnerLoopConfig:
        """How the inner loop adapts and how the outer losses are formed."""
        return InnerLoopConfig(
            steps=self.inner_steps,
            first_order=self.first_order,
            temperature=self.temperature,
            max_weight=self.max_weight,
            normalize_advantages=self.normalize_advantages,
            target_mix=self.target_mix,
            outer_value_target=self.outer_value_target,
            objective=self.objective,
            low_rank_wt=self.low_rank_wt,
        )
