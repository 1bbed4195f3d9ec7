"""Settings of one supervised weight-transform run (appendix C.1), checked before anything runs.

`SupervisedConfig.from_dict` refuses unknown keys (with a did-you-mean), values of the wrong type
and impossible values, each with the fix. Settings left as None take their family's default
(`FAMILY_DEFAULTS`): Finn et al. (2017)'s sinusoid setup, and Deleu et al. (2019)'s Omniglot
MAML setup that appendix C.1 follows.
"""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Union, get_args, get_origin, get_type_hints

from ray_macaw.errors import RayMacawError, did_you_mean, unknown_name
from ray_macaw.supervised.models import MODELS

SINUSOID, OMNIGLOT = "sinusoid", "omniglot"
FAMILIES = (SINUSOID, OMNIGLOT)
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    # Finn et al. 2017 §5.1: K = 10, alpha = 0.01, one inner step, Adam beta = 1e-3.
    SINUSOID: {"inner_lr": 0.01, "shots": 10, "query": 10, "meta_batch_size": 10},
    # Deleu et al. 2019 (pytorch-maml) on Omniglot: alpha = 0.4, 15 query images per class; 16
    # tasks per meta-batch (theirs: 32 five-way tasks; ours are 20-way).
    OMNIGLOT: {"inner_lr": 0.4, "shots": 1, "query": 15, "meta_batch_size": 16},
}


class SupervisedConfigError(RayMacawError, ValueError):
    """A supervised-experiment setting that is unknown, mistyped or impossible."""


@dataclass(frozen=True)
class SupervisedConfig:
    """One MAML run on a few-shot family with one of the three MLPs of Figure 6.

    Attributes:
        family: 'sinusoid' (synthetic, no download) or 'omniglot' (local copy, `data_dir`).
        model: 'weight_transform', 'no_wt_equal_width' or 'no_wt_equal_params'.
        seed: Seed of the initialisation and of the task sampling.
        hidden: Hidden units of the weight-transform and equal-width models (128).
        hidden_layers: Hidden layers of every model (4).
        latent_dim: Latent size c of the weight-transform layers (32).
        meta_steps: Outer (meta-training) steps.
        meta_batch_size: Tasks per outer step (family default when None).
        inner_steps: SGD steps of the inner loop.
        inner_lr: Inner step size alpha (family default when None).
        learn_inner_lr: Learn one alpha per parameter tensor (else alpha is fixed).
        first_order: Drop the second-order term of the meta-gradient (off: exact MAML).
        outer_lr: Adam step size beta of the outer loop.
        shots: Support examples per task (sinusoid) or per class (omniglot); K.
        query: Query examples per task (sinusoid) or per class (omniglot).
        eval_every: Meta-steps between evaluations (and checkpoints).
        eval_tasks: Tasks per split in each evaluation (the same tasks every time).
        task_seed: Seed of the sinusoid function pools (shared by every model and seed).
        train_functions: Sinusoid meta-training pool size.
        val_functions: Sinusoid held-out pool size.
        data_dir: Local Omniglot directory (omniglot only; never downloaded).
        ways: Classes per Omniglot task (N = 20).
        rotations: Omniglot characters rotated by 90/180/270 degrees as extra classes.
        torch_threads: Torch threads per run (1: Tune runs one trial per CPU).
    """

    family: str = SINUSOID
    model: str = MODELS[0]
    seed: int = 0
    hidden: int = 128
    hidden_layers: int = 4
    latent_dim: int = 32
    meta_steps: int = 1000
    meta_batch_size: int | None = None
    inner_steps: int = 1
    inner_lr: float | None = None
    learn_inner_lr: bool = False
    first_order: bool = False
    outer_lr: float = 1e-3
    shots: int | None = None
    query: int | None = None
    eval_every: int = 100
    eval_tasks: int = 100
    task_seed: int = 0
    train_functions: int = 1000
    val_functions: int = 100
    data_dir: str | None = None
    ways: int = 20
    rotations: bool = True
    torch_threads: int = 1

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> SupervisedConfig:
        """A validated config with family defaults filled in; unknown keys are refused."""
        names = [f.name for f in fields(cls)]
        for key in settings:
            if key not in names:
                raise SupervisedConfigError(
                    f"unknown supervised setting '{key}'",
                    f"{did_you_mean(key, names)}the settings are: {', '.join(names)}",
                )
        hints = get_type_hints(cls)
        for key, value in settings.items():
            _check_type(key, value, hints[key])
        config = cls(**settings)
        config = replace(
            config,
            **{
                k: v
                for k, v in FAMILY_DEFAULTS.get(config.family, {}).items()
                if settings.get(k) is None
            },
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Refuse impossible values, naming the fix."""
        if self.family not in FAMILIES:
            raise unknown_name("family", self.family, FAMILIES)
        if self.model not in MODELS:
            raise unknown_name("model", self.model, MODELS)
        for key in POSITIVE:
            value = getattr(self, key)
            if value is not None and value < 1:
                raise SupervisedConfigError(
                    f"{key} must be at least 1, got {value}", f"set {key} >= 1"
                )
        for key in ("inner_lr", "outer_lr"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise SupervisedConfigError(f"{key} must be > 0, got {value}", f"set {key} > 0")
        if self.family == OMNIGLOT and not self.data_dir:
            raise SupervisedConfigError(
                "family 'omniglot' needs data_dir, a local copy of Omniglot",
                "set data_dir (e.g. --set data_dir=/data/omniglot) to the directory holding "
                "images_background and images_evaluation",
            )
        if self.family == OMNIGLOT and self.ways < 2:
            raise SupervisedConfigError(
                f"ways must be at least 2, got {self.ways}", "set ways >= 2"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain settings (what Tune stores as a trial's params)."""
        return asdict(self)


POSITIVE = (
    "hidden",
    "hidden_layers",
    "latent_dim",
    "meta_steps",
    "meta_batch_size",
    "inner_steps",
    "shots",
    "query",
    "eval_every",
    "eval_tasks",
    "train_functions",
    "val_functions",
    "ways",
    "torch_threads",
)


def _check_type(key: str, value: Any, hint: Any) -> None:
    """Refuse a value whose type does not fit the field (bool is not an int; int is a float)."""
    allowed = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    ok = any(
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (t is str and isinstance(value, str))
        for t in allowed
    )
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise SupervisedConfigError(
            f"setting '{key}' must be {names}, got {value!r}", f"give {key} a {names} value"
        )
