"""Offline PEARL's math in pure torch (the baseline of Fig. 3 and Table 1): context encoder,
SAC networks and losses. No Ray here: `ray_macaw.algorithms.pearl.algorithm` wraps them."""

from ray_macaw.pearl.losses import SACConfig, context, meta_batch_step, sac_step
from ray_macaw.pearl.networks import (
    PEARLModel,
    PEARLModelConfig,
    kl_to_standard_normal,
    product_of_gaussians,
)

__all__ = [
    "PEARLModel",
    "PEARLModelConfig",
    "SACConfig",
    "context",
    "kl_to_standard_normal",
    "meta_batch_step",
    "product_of_gaussians",
    "sac_step",
]
