"""`PEARLConfig`: Offline PEARL's settings (appendix Table 2), each documented once in its
setter.

Tasks, data root and buffer cuts are MACAW's (`algorithms/common/config.py`): the posterior is
inferred from uniform rows of each task's inner buffer (the data MACAW adapts on) and SAC trains
on uniform rows of its outer buffer; at test time, from the same adaptation batch MACAW gets
(spec §7.1).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.annotations import override

from ray_macaw.algorithms.common.config import ConfigError, NotProvided, OfflineMetaConfig
from ray_macaw.pearl import PEARLModelConfig, SACConfig


class PEARLConfigError(ConfigError):
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

    error: ClassVar[type[ConfigError]] = PEARLConfigError
    POSITIVE: ClassVar[tuple[str, ...]] = (
        *OfflineMetaConfig.POSITIVE,
        "batch_size",
        "embedding_batch_size",
        "latent_dim",
        "policy_lr",
        "qf_lr",
        "vf_lr",
        "context_lr",
        "reward_scale",
    )
    # Appendix Table 2: the standard column is the defaults; the Meta-World column differs here.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "standard": {},
        "ml45": {
            "task_batch_size": 16,
            "embedding_batch_size": 750,
            "hidden": (512, 512, 512),
            "latent_dim": 8,
        },
    }

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        # .training() (appendix Table 2)
        self.task_batch_size = 10
        self.batch_size = 256
        self.embedding_batch_size = 100
        self.kl_lambda = 0.1
        self.hidden: tuple[int, ...] = (300, 300, 300)
        self.encoder_hidden: tuple[int, ...] = (200, 200, 200)
        self.latent_dim = 5
        self.context_next_obs = False
        self.policy_lr = 3e-4
        self.qf_lr = 3e-4
        self.vf_lr = 3e-4
        self.context_lr = 3e-4
        self.reward_scale = 5.0
        self.discount = 0.99
        self.soft_target_tau = 0.005
        self.policy_mean_reg = 1e-3
        self.policy_std_reg = 1e-3
        self.non_finite_loss: Literal["skip", "stop"] = "skip"

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        task_batch_size: int = NotProvided,
        batch_size: int = NotProvided,
        embedding_batch_size: int = NotProvided,
        kl_lambda: float = NotProvided,
        hidden: tuple[int, ...] = NotProvided,
        encoder_hidden: tuple[int, ...] = NotProvided,
        latent_dim: int = NotProvided,
        context_next_obs: bool = NotProvided,
        policy_lr: float = NotProvided,
        qf_lr: float = NotProvided,
        vf_lr: float = NotProvided,
        context_lr: float = NotProvided,
        reward_scale: float = NotProvided,
        discount: float = NotProvided,
        soft_target_tau: float = NotProvided,
        policy_mean_reg: float = NotProvided,
        policy_std_reg: float = NotProvided,
        non_finite_loss: Literal["skip", "stop"] = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """Offline PEARL's hyperparameters (appendix Table 2; Rakelly et al. 2019).

        Args:
            task_batch_size: Tasks per step (Table 2 "meta batch size": 4-10).
            batch_size: SAC rows per task, from its outer buffer.
            embedding_batch_size: Context rows per task, from its inner buffer (100-256).
            kl_lambda: KL penalty on the task posterior.
            hidden: Policy, Q and V hidden widths.
            encoder_hidden: Context encoder hidden widths.
            latent_dim: Size of z.
            context_next_obs: Include s' in context transitions (PEARL's default: no).
            policy_lr: Adam lr of the policy.
            qf_lr: Adam lr of both Q networks.
            vf_lr: Adam lr of V.
            context_lr: Adam lr of the context encoder.
            reward_scale: SAC's reward scale.
            discount: SAC's discount.
            soft_target_tau: Polyak rate of the target V.
            policy_mean_reg: Weight of mean(mu^2) in the policy loss.
            policy_std_reg: Weight of mean(log_std^2).
            non_finite_loss: On a non-finite loss, 'skip' that update (counted) or 'stop'.
            kwargs: RLlib's `training()` settings.
        """
        super().training(**kwargs)
        return self._apply("training", locals())

    @override(OfflineMetaConfig)
    def check_settings(self) -> None:
        if not (self.kl_lambda >= 0 and 0 < self.discount <= 1 and 0 < self.soft_target_tau <= 1):
            raise PEARLConfigError(
                "kl_lambda must be >= 0, discount and soft_target_tau in (0, 1]",
                "use the Table 2 values (0.1, 0.99, 0.005)",
            )
        if self.inner_data_root is not None:
            raise PEARLConfigError(
                "Offline PEARL reads its context and SAC rows from one root; inner_data_root "
                "is a MACAW setting",
                "remove inner_data_root from PEARL's settings (or its Tune variant)",
            )

    @override(OfflineMetaConfig)
    def batches(self) -> dict[str, tuple[str, int]]:
        return {
            "inner": ("embedding_batch_size", self.embedding_batch_size),
            "outer": ("batch_size", self.batch_size),
            "test": ("eval_adaptation_batch_size", self.eval_adaptation_batch_size),
        }

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
