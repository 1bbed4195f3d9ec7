"""Experiment files for `ray-macaw supervised tune` (`tune_configs/supervised/*.yaml`).

    name: supervised-weight-transform     # experiment directory under storage_path
    description: ...
    config:                               # SupervisedConfig settings every trial shares
      family: sinusoid
      meta_steps: 1500
    models: [weight_transform, no_wt_equal_width, no_wt_equal_params]
    seeds: [0, 1, 2]                      # one trial per model and seed
    cpus_per_trial: 1
    max_concurrent_trials: null           # as many as the CPUs allow
    keep_checkpoints: 1
    max_failures: 1
    storage_path: runs/supervised

Unknown keys are refused with a did-you-mean, and every trial's settings are validated (data
directory included) before Ray starts. Environment variables in `storage_path` and
`config.data_dir` are expanded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ray_macaw.errors import MissingDataError, did_you_mean
from ray_macaw.supervised.config import OMNIGLOT, SupervisedConfig, SupervisedConfigError
from ray_macaw.supervised.models import MODELS


@dataclass(frozen=True)
class SupervisedExperiment:
    """A parsed experiment file: shared settings, the models compared and the seeds.

    Attributes:
        name: Experiment directory name under `storage_path`.
        config: Settings shared by every trial (`SupervisedConfig` keys except model and seed).
        models: The models compared (one trial per model and seed).
        seeds: Run seeds.
        description: Free text.
        cpus_per_trial: CPUs Tune reserves per trial (and torch threads it runs).
        max_concurrent_trials: At most this many trials at once (None: as the CPUs allow).
        keep_checkpoints: Checkpoints kept per trial (the last ones).
        max_failures: Restarts of a failed trial from its last checkpoint.
        storage_path: Where results go (a local path, made absolute, or a URI).
    """

    name: str
    config: dict[str, Any]
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0,)
    description: str = ""
    cpus_per_trial: int = 1
    max_concurrent_trials: int | None = None
    keep_checkpoints: int = 1
    max_failures: int = 1
    storage_path: str = "runs/supervised"
    source: Path | None = field(default=None, compare=False)

    def trial_configs(self) -> list[SupervisedConfig]:
        """The validated config of every trial (models x seeds)."""
        shared = {**self.config, "torch_threads": self.cpus_per_trial}
        return [
            SupervisedConfig.from_dict({**shared, "model": model, "seed": seed})
            for model in self.models
            for seed in self.seeds
        ]

    def validate(self, check_data: bool = True) -> None:
        """Validate every trial; with `check_data`, also open the Omniglot directory."""
        for key in ("model", "seed", "torch_threads"):
            if key in self.config:
                raise SupervisedConfigError(
                    f"'{key}' is set by the experiment, not in its config section",
                    "list models under 'models:', seeds under 'seeds:' and set threads with "
                    "'cpus_per_trial:'",
                    self.source,
                )
        if not self.models or not self.seeds:
            raise SupervisedConfigError("no models or no seeds", "list at least one of each")
        configs = self.trial_configs()
        if check_data and configs[0].family == OMNIGLOT:
            from ray_macaw.supervised.omniglot import find_root, scan_characters

            assert configs[0].data_dir is not None
            scan_characters(find_root(configs[0].data_dir))

    def with_overrides(self, overrides: dict[str, Any]) -> SupervisedExperiment:
        """A copy with `--set KEY=VALUE` settings merged into `config`."""
        return replace(self, config=_expand({**self.config, **overrides}))

    def to_yaml(self) -> str:
        """The experiment as YAML (saved with the results for reports)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        doc["models"], doc["seeds"] = list(self.models), list(self.seeds)
        return yaml.safe_dump(doc, sort_keys=False)


TOP_KEYS = tuple(f.name for f in fields(SupervisedExperiment) if f.name != "source")


def load_experiment(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> SupervisedExperiment:
    """Parse and validate (without opening data) an experiment file, `overrides` applied."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            "no such experiment file", "give a file from tune_configs/supervised/", path
        )
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise SupervisedConfigError("an experiment file must be a mapping", "see the docs", path)
    for key in doc:
        if key not in TOP_KEYS:
            raise SupervisedConfigError(
                f"unknown experiment key '{key}'",
                f"{did_you_mean(key, TOP_KEYS)}the keys are: {', '.join(TOP_KEYS)}",
                path,
            )
    spec = SupervisedExperiment(
        name=str(doc.get("name") or path.stem),
        config=_expand(dict(doc.get("config") or {})),
        models=tuple(doc.get("models") or MODELS),
        seeds=tuple(doc.get("seeds") or (0,)),
        description=str(doc.get("description") or ""),
        cpus_per_trial=int(doc.get("cpus_per_trial", 1)),
        max_concurrent_trials=doc.get("max_concurrent_trials"),
        keep_checkpoints=int(doc.get("keep_checkpoints", 1)),
        max_failures=int(doc.get("max_failures", 1)),
        storage_path=str(doc.get("storage_path") or "runs/supervised"),
        source=path,
    )
    spec = spec.with_overrides(overrides or {})
    spec.validate(check_data=False)
    return spec


def storage_location(value: str) -> str:
    """Local paths become absolute (Tune needs that); URIs (s3://, gs://) stay as they are."""
    value = os.path.expandvars(value)
    return value if "://" in value else str(Path(value).expanduser().resolve())


def _expand(config: dict[str, Any]) -> dict[str, Any]:
    if isinstance(config.get("data_dir"), str):
        config["data_dir"] = os.path.expandvars(config["data_dir"])
    return config
