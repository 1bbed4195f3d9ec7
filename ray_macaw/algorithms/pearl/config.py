"""`PEARLConfig`: Offline PEARL's settings (appendix Table 2), documented once.

Tasks, data root and buffer cuts are MACAW's (config_base.py): the posterior is inferred from
uniform rows of each task's inner buffer (the data MACAW adapts on) and SAC trains on uniform rows
of its outer buffer; at test time, from the same adaptation batch MACAW gets (spec §7.1).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.annotations import override

from ray_macaw.algorithms.common.config import DATA, ENVIRONMENT, OfflineMetaConfig
from ray_macaw.errors import RayMacawError
from ray_macaw.pearl import PEARLModelConfig, SACConfig

TRAINING = {
    "task_batch_size": 10,  # tasks per step (Table 2 "meta batch size": 4-10)
    "batch_size": 256,  # SAC rows per task, from its outer buffer
    "embedding_batch_size": 100,  # context rows per task, from its inner buffer (100-256)
    "kl_lambda": 0.1,  # KL penalty on the task posterior
    "hidden": (300, 300, 300),  # policy, Q and V hidden widths
    "encoder_hidden": (200, 200, 200),  # context encoder hidden widths (Rakelly et al.)
    "latent_dim": 5,  # size of z
    "context_next_obs": False,  # include s' in context transitions (PEARL's default: no)
    "policy_lr": 3e-4,
    "qf_lr": 3e-4,
    "vf_lr": 3e-4,
    "context_lr": 3e-4,
    "reward_scale": 5.0,
    "discount": 0.99,
    "soft_target_tau": 0.005,  # Polyak rate of the target V
    "policy_mean_reg": 1e-3,  # weight of mean(mu^2) in the policy loss
    "policy_std_reg": 1e-3,  # weight of mean(log_std^2)
    "non_finite_loss": "skip",  # non-finite loss: 'skip' that update (counted) or 'stop'
}
EVALUATION = {
    "eval_adaptation_batch_size": 256,  # uniform test-buffer rows the posterior is inferred from
    "eval_episodes_per_task": 1,  # deterministic episodes per held-out task
    "eval_num_cpus_per_task": 1.0,  # CPUs of each held-out task's evaluation (a Ray task)
    "eval_at_start": True,  # also evaluate the untrained model, at meta-step 0
}
# Appendix Table 2: the standard column is the defaults above; the Meta-World column differs here.
PRESETS: dict[str, dict[str, Any]] = {
    "standard": {},
    "ml45": {
        "task_batch_size": 16,
        "embedding_batch_size": 750,
        "hidden": (512, 512, 512),
        "latent_dim": 8,
    },
}
POSITIVE = (
    "task_batch_size",
    "batch_size",
    "embedding_batch_size",
    "latent_dim",
    "policy_lr",
    "qf_lr",
    "vf_lr",
    "context_lr",
    "reward_scale",
    "buffer_stride",
    "eval_adaptation_batch_size",
    "eval_episodes_per_task",
)


class PEARLConfigError(RayMacawError, ValueError):
    """An Offline PEARL setting that cannot work, and how to fix it."""


class PEARLConfig(OfflineMetaConfig):
    """Configuration of `PEARL` (Offline PEARL, the baseline of Fig. 3 and appendix C.2).

    Example:
        config = (PEARLConfig()
                  .environment(family="cheetah-vel", split="ood")
                  .offline_data(root="/data/macaw")
                  .training(task_batch_size=10, kl_lambda=0.1))
        algo = config.build_algo()
    """

    GROUPS: ClassVar[dict[str, dict[str, Any]]] = {
        "environment": ENVIRONMENT,
        "data": DATA,
        "training": TRAINING,
        "evaluation": EVALUATION,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    task_batch_size: int
    batch_size: int
    embedding_batch_size: int
    kl_lambda: float
    hidden: tuple[int, ...]
    encoder_hidden: tuple[int, ...]
    latent_dim: int
    context_next_obs: bool
    policy_lr: float
    qf_lr: float
    vf_lr: float
    context_lr: float
    reward_scale: float
    discount: float
    soft_target_tau: float
    policy_mean_reg: float
    policy_std_reg: float
    non_finite_loss: Literal["skip", "stop"]

    def __init__(self, algo_class: type | None = None) -> None:
        from ray_macaw.algorithms.pearl.algorithm import PEARL

        super().__init__(algo_class=algo_class or PEARL)

    @override(AlgorithmConfig)
    def validate(self, check_data: bool = True) -> None:
        """RLlib's checks, then PEARL's, each with the fix; with `check_data=False`, the
        settings alone (the data need not exist yet)."""
        super().validate()
        from ray_macaw.algorithms.macaw.validation import check_data_serves, resolve_split

        for name in POSITIVE:
            if not getattr(self, name) > 0:
                raise PEARLConfigError(
                    f"{name} must be positive, got {getattr(self, name)}",
                    f"set a positive {name} in .training() / .evaluation()",
                )
        if not (self.kl_lambda >= 0 and 0 < self.discount <= 1 and 0 < self.soft_target_tau <= 1):
            raise PEARLConfigError(
                "kl_lambda must be >= 0, discount and soft_target_tau in (0, 1]",
                "use the Table 2 values (0.1, 0.99, 0.005)",
            )
        if self.non_finite_loss not in ("skip", "stop"):
            raise PEARLConfigError(
                f"unknown non_finite_loss {self.non_finite_loss!r}",
                "use 'skip' (skip the update and count it) or 'stop' (raise an error)",
            )
        if self.inner_data_root is not None:
            raise PEARLConfigError(
                "Offline PEARL reads its context and SAC rows from one root; inner_data_root "
                "is a MACAW setting",
                "remove inner_data_root from PEARL's settings (or its Tune variant)",
            )
        split = resolve_split(self)
        if check_data:
            check_data_serves(
                self,
                split,
                {
                    "inner": ("embedding_batch_size", self.embedding_batch_size),
                    "outer": ("batch_size", self.batch_size),
                    "test": ("eval_adaptation_batch_size", self.eval_adaptation_batch_size),
                },
            )

    def model_config(
        self, obs_dim: int, act_dim: int, low: tuple[float, ...], high: tuple[float, ...]
    ) -> PEARLModelConfig:
        """The networks' shapes for the family's observation and action spaces."""
        return PEARLModelConfig(
            obs_dim=obs_dim,
            act_dim=act_dim,
            action_low=low,
            action_high=high,
            hidden=tuple(self.hidden),
            encoder_hidden=tuple(self.encoder_hidden),
            latent_dim=self.latent_dim,
            context_next_obs=self.context_next_obs,
        )

    def sac_config(self) -> SACConfig:
        """The loss settings."""
        return SACConfig(
            reward_scale=self.reward_scale,
            discount=self.discount,
            kl_lambda=self.kl_lambda,
            soft_target_tau=self.soft_target_tau,
            policy_mean_reg=self.policy_mean_reg,
            policy_std_reg=self.policy_std_reg,
        )

    def learning_rates(self) -> dict[str, float]:
        """Adam lr per optimiser (Table 2: all 3e-4)."""
        return {
            "policy": self.policy_lr,
            "qf1": self.qf_lr,
            "qf2": self.qf_lr,
            "vf": self.vf_lr,
            "context": self.context_lr,
        }
