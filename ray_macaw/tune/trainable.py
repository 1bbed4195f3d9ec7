"""`MetaRLTrainable`: one Tune trial of any ray-macaw algorithm (MACAW or Offline PEARL).

A Tune experiment has one trainable, but a baselines experiment mixes algorithms. Each trial's
config is the experiment's flat run-file settings (`SHARED`, plus the trial's variant settings,
searched values and seed), from which the trial builds its algorithm exactly as `ray-macaw train`
does; checkpoints are the algorithm's own, so `ray-macaw evaluate / finetune` open them directly.
"""

from __future__ import annotations

import functools
from typing import Any

from ray import tune
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.tune.execution.placement_groups import PlacementGroupFactory

from ray_macaw.outputs import SEED_GRID
from ray_macaw.training.run_file import config_from_dict, run_file_keys, shared_settings_for

SHARED = "shared"  # the experiment file's `config` section
VARIANT = "variant"  # the trial's variant name
VARIANT_SETTINGS = "variant_settings"  # that variant's settings


def trial_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The flat run-file settings of a trial from its Tune config."""
    own = {
        k: v for k, v in config.items() if k not in (SHARED, VARIANT, VARIANT_SETTINGS, SEED_GRID)
    }
    own = {**(config.get(VARIANT_SETTINGS) or {}), **own}
    return shared_settings_for(config.get(SHARED) or {}, own)


@functools.cache
def _rllib_defaults() -> AlgorithmConfig:
    return AlgorithmConfig()


def trial_algorithm_config(config: dict[str, Any]) -> Any:
    """The trial's MACAWConfig or PEARLConfig. Keys of the Tune config that are RLlib
    `AlgorithmConfig` attributes rather than run-file settings (e.g. `callbacks_class`, given
    through the Python API) are applied with `update_from_dict`."""
    settings = trial_settings(config)
    known = run_file_keys(settings)
    rllib = {
        k: settings.pop(k)
        for k in list(settings)
        if k not in known and hasattr(_rllib_defaults(), k)
    }
    algo_config, _ = config_from_dict(settings)
    return algo_config.update_from_dict(rllib) if rllib else algo_config


class MetaRLTrainable(tune.Trainable):
    """Builds the trial's algorithm and trains, checkpoints and restores it."""

    @classmethod
    def default_resource_request(cls, config: Any) -> PlacementGroupFactory:
        """The algorithm's own request (MACAW: driver, inner-loop workers and an evaluation slot;
        PEARL: driver and an evaluation slot)."""
        algo_config = trial_algorithm_config(config)
        return algo_config.algo_class.default_resource_request(algo_config)

    def setup(self, config: dict[str, Any]) -> None:
        self.algo = trial_algorithm_config(config).build_algo()

    def step(self) -> dict[str, Any]:
        return self.algo.train()

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.save_to_path(checkpoint_dir)

    def load_checkpoint(self, checkpoint: Any) -> None:  # the checkpoint directory
        self.algo.restore_from_path(checkpoint)

    def cleanup(self) -> None:
        self.algo.stop()
