"""Networks: weight-transform / bias-transform / plain layers, MACAW's policy and value network."""

from ray_macaw.nn.layers import (
    LAYER_KINDS,
    BiasTransformLinear,
    LayerKind,
    PlainLinear,
    WeightTransformLinear,
    latent_parameter_names,
    make_layer,
)
from ray_macaw.nn.networks import MACAWPolicy, ValueNetwork, gaussian_log_prob

__all__ = [
    "LAYER_KINDS",
    "BiasTransformLinear",
    "LayerKind",
    "MACAWPolicy",
    "PlainLinear",
    "ValueNetwork",
    "WeightTransformLinear",
    "gaussian_log_prob",
    "latent_parameter_names",
    "make_layer",
]
