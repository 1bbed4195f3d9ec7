"""MACAW's math in pure torch: losses, learned inner lrs, the functional inner loop, meta-gradients.

No Ray here: `ray_macaw.algorithms.macaw` wraps these functions.
"""

from ray_macaw.macaw.inner_loop import AdaptedParams, InnerLoopConfig, adapt, task_meta_loss
from ray_macaw.macaw.meta_gradient import LossScale, loss_divisor, meta_backward
from ray_macaw.macaw.model import MACAWModel, ModelConfig, build_optimizers

__all__ = [
    "AdaptedParams",
    "InnerLoopConfig",
    "LossScale",
    "MACAWModel",
    "ModelConfig",
    "adapt",
    "build_optimizers",
    "loss_divisor",
    "meta_backward",
    "task_meta_loss",
]
