"""YAML run files for `ray-macaw train`: every setting of the algorithm's config by name, plus
how to run.

    algorithm: macaw              # optional: 'macaw' (MACAWConfig) or 'pearl' (PEARLConfig)
    family: point-robot
    data_root: /tmp/pr-data
    seed: 0
    preset: standard              # optional: 'ml45', Table 4's (PEARL: Table 2's) ML45 column
    task_batch_size: 5            # any setting of the config (algorithms/*/config.py)
    evaluation_interval: 250
    num_cpus_for_main_process: 1  # RLlib's: the driver's CPUs (a Tune trial's first bundle)
    stop_meta_steps: 10000        # run options
    checkpoint_every: 1000
    out: runs/point-robot

Unknown keys are refused with a did-you-mean, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import numbers
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ray_macaw.algorithms.common.config import OfflineMetaConfig
from ray_macaw.algorithms.macaw.config import MACAWConfig
from ray_macaw.algorithms.pearl.config import PEARLConfig
from ray_macaw.errors import DataError, RayMacawError, did_you_mean

# `algorithm:` values and their config classes.
ALGORITHMS: dict[str, type[OfflineMetaConfig]] = {"macaw": MACAWConfig, "pearl": PEARLConfig}


@dataclass(frozen=True)
class RunOptions:
    """How `ray-macaw train` runs a config.

    Attributes:
        out: Directory of checkpoints and the metrics log.
        stop_meta_steps: Stop after this many meta-steps.
        checkpoint_every: Save a checkpoint every this many meta-steps (and at the end).
        log_every: Print a progress line every this many meta-steps.
    """

    out: str = "runs/macaw"
    stop_meta_steps: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 50


RUN_KEYS = {f.name for f in fields(RunOptions)}
# Every setting some algorithm has (what experiment files may name).
ANY_SETTING = {k for config in ALGORITHMS.values() for k in config.settings()}


class RunConfigError(RayMacawError, ValueError):
    """A run file that cannot be used as it is."""


# Keys that are no setter parameter: (YAML kind, may be null).
OTHER_TYPES = {
    "seed": ("int", False),
    "preset": ("str", False),
    "algorithm": ("str", False),
    "evaluation_interval": ("int", True),  # RLlib's: None or 0 turn evaluation off
    # RLlib's `resources()`: the driver's CPUs, e.g. 0.5 so two trials share two cores.
    "num_cpus_for_main_process": ("number", False),
}
_EXAMPLES = {
    "int": "an integer such as 5",
    "number": "a number such as 0.001",
    "bool": "true or false",
    "str": "a text value",
    "ints": "a list of integers such as [0, 1, 2]",
}


def _kind(hint: Any) -> tuple[str, bool]:
    """The YAML kind a setting of type `hint` takes (its setter's annotation), and whether it
    may be null."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    (base,) = [a for a in args if a is not type(None)]
    if base is bool or base is int:
        kind = base.__name__
    elif base is float:
        kind = "number"
    elif typing.get_origin(base) in (tuple, list):
        kind = "ints"
    else:  # str, or a Literal of names
        kind = "str"
    return kind, type(None) in args


def setting_kinds(config_class: type[OfflineMetaConfig]) -> dict[str, tuple[str, bool]]:
    """Every key of a run file for `config_class` that has a type, with its kind."""
    kinds = {k: _kind(hint) for k, hint in config_class.setting_types().items()}
    return {**kinds, **OTHER_TYPES}


def _number(key: str, value: Any, kinds: dict[str, tuple[str, bool]], path: Any) -> Any:
    """YAML reads `1e-4` (no dot) as a string: read it as the number the setting takes."""
    kind = kinds.get(key, ("", False))[0]
    if kind not in ("int", "number") or not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        raise RunConfigError(
            f"setting '{key}' must be a number, got '{value}'",
            f"write e.g. {key}: {'5' if kind == 'int' else '0.001'}",
            path,
        ) from None
    return int(number) if kind == "int" and number.is_integer() else number


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is(kind: str, value: Any) -> bool:
    return {
        "int": _integer(value),
        "number": isinstance(value, numbers.Real) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "ints": isinstance(value, list | tuple) and all(_integer(v) for v in value),
    }[kind]


def check_type(
    key: str, value: Any, kind: tuple[str, bool], default: Any, path: str | Path | None
) -> None:
    """Refuse a value of the wrong YAML type (a list, null, true, 1.5 for an integer...)."""
    name, optional = kind
    if (value is None and optional) or _is(name, value):
        return
    raise RunConfigError(
        f"setting '{key}' must be {_EXAMPLES[name]}{' or null' if optional else ''}, "
        f"got {value!r} ({type(value).__name__})",
        f"write e.g. {key}: {_example(key, default, name)}",
        path,
    )


def _example(key: str, default: Any, kind: str) -> str:
    if kind == "ints":
        return str(list(default)) if default else "[0, 1, 2]"
    if default is None or key in OTHER_TYPES:
        return {"int": "1", "number": "1.0", "str": "name", "ints": "[0, 1]"}.get(kind, "1")
    return str(default).lower() if isinstance(default, bool) else str(default)


def load_run_file(path: str | Path) -> tuple[MACAWConfig, RunOptions]:
    """Read a YAML run file into a MACAWConfig and run options."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise DataError("run file not found", "check the path", path) from e
    except yaml.YAMLError as e:
        raise RunConfigError(f"run file is not valid YAML ({e})", "fix the syntax", path) from e
    if not isinstance(doc, dict):
        raise RunConfigError("run file must be a mapping of settings", "see docs/train.md", path)
    return config_from_dict(doc, path)


def algorithm_config(
    doc: dict[str, Any], path: str | Path | None = None
) -> type[OfflineMetaConfig]:
    """The config class named by the settings' `algorithm:` (MACAW when absent)."""
    name = doc.get("algorithm", "macaw")
    if name not in ALGORITHMS:
        raise RunConfigError(
            f"unknown algorithm '{name}'",
            f"{did_you_mean(str(name), ALGORITHMS)}use one of {sorted(ALGORITHMS)}",
            path,
        )
    return ALGORITHMS[name]


def run_file_keys(doc: dict[str, Any]) -> set[str]:
    """Every key a run file for the settings' algorithm may have."""
    return set(algorithm_config(doc).settings()) | RUN_KEYS | set(OTHER_TYPES)


def config_from_dict(doc: dict[str, Any], path: str | Path | None = None) -> tuple[Any, RunOptions]:
    """Build the algorithm's config (MACAWConfig or PEARLConfig, by `algorithm:`) and
    RunOptions from flat settings; unknown keys are errors."""
    config_class = algorithm_config(doc, path)
    settings = config_class.settings()
    known = run_file_keys(doc)
    for key in doc:
        if key not in known:
            other = [n for n, c in ALGORITHMS.items() if key in c.settings()]
            name = doc.get("algorithm", "macaw")
            raise RunConfigError(
                f"unknown setting '{key}'"
                + (f" ({', '.join(other)} has it, {name} does not)" if other else ""),
                f"{did_you_mean(key, known)}remove it or use one of the settings of "
                f"{config_class.__name__} (ray_macaw/algorithms/)",
                path,
            )
    kinds = setting_kinds(config_class)
    doc = {k: _number(k, v, kinds, path) for k, v in doc.items()}
    for key, value in doc.items():
        if key in kinds:
            check_type(key, value, kinds[key], settings.get(key), path)
    _check_other_keys(doc, path)
    config = config_class()
    if "preset" in doc:  # a Table 4 (PEARL: Table 2) column first; explicit settings override it
        config.preset(doc["preset"])
    for key, value in doc.items():
        if key in settings:
            tuples = ("hidden", "encoder_hidden")
            setattr(config, key, tuple(value) if key in tuples else value)
    if "seed" in doc:
        config.debugging(seed=doc["seed"])
    if "evaluation_interval" in doc:
        config.evaluation(evaluation_interval=doc["evaluation_interval"])
    if "num_cpus_for_main_process" in doc:
        config.resources(num_cpus_for_main_process=doc["num_cpus_for_main_process"])
    options = RunOptions(**{k: v for k, v in doc.items() if k in RUN_KEYS})
    for name in ("stop_meta_steps", "checkpoint_every", "log_every"):
        value = getattr(options, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunConfigError(f"{name} must be a positive integer", f"set {name}: 1000", path)
    return config, options


def _check_other_keys(doc: dict[str, Any], path: str | Path | None) -> None:
    """The values of the keys that are no setting of the config (`OTHER_TYPES`, `out`)."""
    if (doc.get("evaluation_interval") or 0) < 0:
        raise RunConfigError(
            f"evaluation_interval cannot be negative, got {doc['evaluation_interval']}",
            "set evaluation_interval: 250 (meta-steps between held-out evaluations; 0: none)",
            path,
        )
    if doc.get("num_cpus_for_main_process", 1) <= 0:
        raise RunConfigError(
            f"num_cpus_for_main_process must be positive, got {doc['num_cpus_for_main_process']}",
            "set num_cpus_for_main_process: 0.5 (or more; the driver needs a share of a CPU)",
            path,
        )
    if not isinstance(doc.get("out", ""), str):
        raise RunConfigError("out must be a directory path", "write e.g. out: runs/macaw", path)


def shared_settings_for(
    shared: dict[str, Any], own: dict[str, Any], path: str | Path | None = None
) -> dict[str, Any]:
    """A trial's flat settings in an experiment mixing algorithms: the shared `config` section
    without the settings only other algorithms have (MACAW's inner_batch_size means nothing to
    PEARL), then the trial's own settings (variant, search, seed), which must all be valid."""
    merged = {**shared, **own}
    settings = algorithm_config(merged, path).settings()
    foreign = ANY_SETTING - set(settings)
    return {**{k: v for k, v in shared.items() if k not in foreign}, **own}
