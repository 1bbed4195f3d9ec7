"""`MACAWConfig`: every MACAW hyperparameter, with spec §10 (appendix Table 4) defaults.

Each setting's type and default are set in `__init__` and it is documented once, in the `Args:` of
its setter (`training`, `inner_loop_workers`, `evaluation`; the shared ones in
`algorithms/common/config.py`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.annotations import override

from ray_macaw.algorithms.common.config import ConfigError, NotProvided, OfflineMetaConfig
from ray_macaw.algorithms.macaw import validation
from ray_macaw.algorithms.macaw.validation import MACAWConfigError, check_macaw_settings
from ray_macaw.macaw import InnerLoopConfig, LossScale, ModelConfig
from ray_macaw.macaw.inner_loop import ObjectiveName
from ray_macaw.macaw.model import Adapt
from ray_macaw.macaw.objectives import get_objective
from ray_macaw.nn import LayerKind

Device = Literal["auto", "cpu", "cuda"]
NonFinite = Literal["skip", "stop"]


class MACAWConfig(OfflineMetaConfig):
    """Configuration of `MACAW`: RLlib's fluent builder over the settings below.

    Example:
        config = (MACAWConfig()
                  .environment(family="cheetah-vel", split="default")
                  .offline_data(root="/data/macaw")
                  .training(task_batch_size=5, outer_policy_lr=1e-4)
                  .inner_loop_workers(num_workers=2))
        algo = config.build_algo()
    """

    error: ClassVar[type[ConfigError]] = MACAWConfigError
    POSITIVE: ClassVar[tuple[str, ...]] = (*OfflineMetaConfig.POSITIVE, *validation.POSITIVE)
    SETTERS: ClassVar[tuple[str, ...]] = (
        "environment",
        "offline_data",
        "training",
        "inner_loop_workers",
        "evaluation",
    )
    RENAMES: ClassVar[dict[str, str]] = {
        **OfflineMetaConfig.RENAMES,
        "num_workers": "num_inner_loop_workers",
        "num_cpus_per_worker": "num_cpus_per_inner_worker",
        "num_gpus_per_worker": "num_gpus_per_inner_worker",
        "max_restarts": "max_inner_worker_restarts",
    }
    # Appendix Table 4: the standard column is the defaults; the Meta-World column differs here.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
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

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        # .training() (spec §10, Table 4)
        self.task_batch_size = 5
        self.inner_batch_size = 256
        self.outer_batch_size = 256
        self.inner_steps = 1
        self.first_order = False
        self.outer_value_lr = 1e-5
        self.outer_policy_lr = 1e-4
        self.lrlr = 1e-3
        self.inner_policy_lr = 1e-3
        self.inner_value_lr = 1e-3
        self.adv_coef = 0.01
        self.advantage_head: bool | None = None
        self.policy_layer: LayerKind | None = None
        self.value_layer: LayerKind | None = None
        self.hidden: tuple[int, ...] = (100, 100, 100)
        self.latent_dim = 100
        self.temperature = 1.0
        self.max_weight = 20.0
        self.normalize_advantages = True
        self.target_mix = 0.9
        self.outer_value_target: Literal["bootstrap", "mc"] = "bootstrap"
        self.objective: ObjectiveName = "macaw"
        self.loss_scale: LossScale = "num_train_tasks"
        self.adapt: Adapt = "all"
        self.low_rank_wt = True
        self.vectorize = True
        self.grad_clip_norm: float | None = None
        self.non_finite_loss: NonFinite = "skip"
        self.device: Device = "auto"
        # .inner_loop_workers()
        self.num_inner_loop_workers = 0
        self.num_cpus_per_inner_worker = 1.0
        self.num_gpus_per_inner_worker = 0.0
        self.max_inner_worker_restarts = 3
        # .evaluation(), beyond the shared ones
        self.eval_adaptation_steps = 1
        self.eval_finetune_steps = 20
        self.eval_finetune_value_lr = 1e-5
        self.eval_finetune_policy_lr = 1e-3

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        task_batch_size: int = NotProvided,
        inner_batch_size: int = NotProvided,
        outer_batch_size: int = NotProvided,
        inner_steps: int = NotProvided,
        first_order: bool = NotProvided,
        outer_value_lr: float = NotProvided,
        outer_policy_lr: float = NotProvided,
        lrlr: float = NotProvided,
        inner_policy_lr: float = NotProvided,
        inner_value_lr: float = NotProvided,
        adv_coef: float = NotProvided,
        advantage_head: bool | None = NotProvided,
        policy_layer: LayerKind | None = NotProvided,
        value_layer: LayerKind | None = NotProvided,
        hidden: tuple[int, ...] = NotProvided,
        latent_dim: int = NotProvided,
        temperature: float = NotProvided,
        max_weight: float = NotProvided,
        normalize_advantages: bool = NotProvided,
        target_mix: float = NotProvided,
        outer_value_target: Literal["bootstrap", "mc"] = NotProvided,
        objective: ObjectiveName = NotProvided,
        loss_scale: LossScale = NotProvided,
        adapt: Adapt = NotProvided,
        low_rank_wt: bool = NotProvided,
        vectorize: bool = NotProvided,
        grad_clip_norm: float | None = NotProvided,
        non_finite_loss: NonFinite = NotProvided,
        device: Device = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """MACAW's hyperparameters (spec §10, appendix Table 4).

        Args:
            task_batch_size: Tasks per meta-step (Table 4 "task batch size").
            inner_batch_size: Contiguous rows per inner batch (spec §4.2).
            outer_batch_size: Uniform rows per outer batch.
            inner_steps: Inner SGD steps; the inner batch is split across them.
            first_order: Drop the second-order terms (MACAW is second order).
            outer_value_lr: Adam lr of the value network (phi).
            outer_policy_lr: Adam lr of the policy (theta), with its advantage head.
            lrlr: Adam lr of the learned inner lrs (rho) and of c (lambda = softplus(c)).
            inner_policy_lr: Initial inner policy lr (learned, softplus(log lr)).
            inner_value_lr: Initial inner value lr (learned).
            adv_coef: Initial lambda, the advantage-head loss coefficient (learned).
            advantage_head: The policy's advantage head and its inner loss (spec §1.2);
                None, like the two below: the objective's network (weight transform with the
                head for MACAW, no head for MAML+AWR and Meta-BC, bias transform without it for
                the multi-task baseline; spec §9).
            policy_layer: 'weight_transform', 'bias_transform' or 'linear'.
            value_layer: As `policy_layer`, for the value network.
            hidden: Hidden widths of both networks.
            latent_dim: Latent size c of weight-transform layers.
            temperature: AWR temperature T.
            max_weight: Largest AWR weight (the log-weights are clipped at ln of it).
            normalize_advantages: Per-batch advantage normalisation (unbiased std).
            target_mix: phi_bar = mix * phi + (1 - mix) * phi' (the outer value target).
            outer_value_target: 'bootstrap' (the authors) or 'mc' (the paper).
            objective: 'macaw', 'maml_awr' (no advantage head), 'meta_bc' or 'multitask' (the
                baselines, spec §9): training losses, test-time adaptation and fine-tuning
                updates (`macaw/objectives.py`).
            loss_scale: Divide the meta-loss by 'num_train_tasks' (the authors) or
                'task_batch'.
            adapt: Adapt every tensor ('all', the authors) or only the latents ('latent').
            low_rank_wt: The closed-form low-rank weight-transform inner step (exact, faster).
            vectorize: vmap across tasks (else a per-task loop; the same gradient).
            grad_clip_norm: Clip each network's meta-gradient norm; None: no clipping (the
                authors' 1e9 clip never bites).
            non_finite_loss: On a non-finite loss or gradient, 'skip' the update (counted) or
                'stop'.
            device: Where the model, optimisers and batches live, in the driver and in
                inner-loop workers: 'auto' (CUDA when Ray gave the process a GPU), 'cpu' or
                'cuda' (`algorithms/common/devices.py`).
            kwargs: RLlib's `training()` settings.
        """
        super().training(**kwargs)
        return self._apply("training", locals())

    def inner_loop_workers(
        self,
        *,
        num_workers: int = NotProvided,
        num_cpus_per_worker: float = NotProvided,
        num_gpus_per_worker: float = NotProvided,
        max_restarts: int = NotProvided,
    ) -> Self:
        """Ray actors computing per-task meta-gradients.

        Args:
            num_workers: Inner-loop workers; 0: the driver computes the step, vectorised.
            num_cpus_per_worker: CPUs each worker reserves.
            num_gpus_per_worker: GPUs each worker reserves (with `device` 'auto' or 'cuda').
            max_restarts: Dead workers replaced per run (their step recomputed).
        """
        return self._apply("inner_loop_workers", locals())

    @override(OfflineMetaConfig)
    def evaluation(
        self,
        *,
        adaptation_steps: int = NotProvided,
        finetune_steps: int = NotProvided,
        finetune_value_lr: float = NotProvided,
        finetune_policy_lr: float = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """The shared evaluation settings (`OfflineMetaConfig.evaluation`) plus MACAW's own.

        Args:
            adaptation_steps: Test-time adaptation steps (the authors: 1).
            finetune_steps: The multi-task baseline's Adam fine-tuning steps at test time
                (spec §7.2).
            finetune_value_lr: Their value lr.
            finetune_policy_lr: Their policy lr.
            kwargs: The shared and RLlib's evaluation settings.
        """
        super().evaluation(**kwargs)
        return self._apply("evaluation", locals())

    @override(OfflineMetaConfig)
    def check_settings(self) -> None:
        check_macaw_settings(self)

    @override(OfflineMetaConfig)
    def batches(self) -> dict[str, tuple[str, int]]:
        return {
            "inner": ("inner_batch_size", self.inner_batch_size),
            "outer": ("outer_batch_size", self.outer_batch_size),
            "test": ("eval_adaptation_batch_size", self.eval_adaptation_batch_size),
        }

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
