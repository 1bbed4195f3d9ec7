"""Experiment files for `ray-macaw tune` (`tune_configs/*.yaml`): what varies across trials.

    name: cheetah-vel-weight-transform      # experiment directory under storage_path
    config:                                 # settings every trial shares (as in a train run file)
      family: cheetah-vel
      data_root: ${RAY_MACAW_DATA}          # environment variables are expanded
    variants:                               # named groups of settings; each trial runs one
      wt: {}
      no_wt: {policy_layer: bias_transform, value_layer: bias_transform}
    search:                                 # a list is a grid; or a sampler (see SAMPLERS)
      outer_policy_lr: {loguniform: [1.0e-5, 1.0e-3]}
    seeds: [0, 1, 2]
    stop_meta_steps: 20000
    checkpoint_every: 1000
    scheduler: {type: asha, grace_period: 2000}   # optional; FIFO otherwise
    finetune: {budgets: [20000, 200000]}          # optional: online fine-tuning after training

`extends: other.yaml` (relative to this file) starts from another experiment file: its `config` is
merged under this one's, and every other section this file gives replaces the other's.
Unknown keys are refused with a did-you-mean at every level.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ray_macaw.data.storage import location
from ray_macaw.errors import DataError, RayMacawError, did_you_mean
from ray_macaw.evaluation.finetune import FineTuneConfig
from ray_macaw.training.run_file import (
    ANY_SETTING,
    RUN_KEYS,
    RunConfigError,
    config_from_dict,
    shared_settings_for,
)

DEFAULT_METRIC = "held_out/post_adaptation_return_mean"  # see algorithm/metrics.py HELD_OUT
SAMPLERS = ("grid_search", "choice", "uniform", "loguniform", "quniform", "randint")
# Settings a trial may vary: any algorithm's, the algorithm itself, the seed, the eval cadence.
VARIABLE = ANY_SETTING | {"algorithm", "seed", "evaluation_interval"}
SCHEDULERS = ("fifo", "asha")
TOP_KEYS = (
    "extends",
    "name",
    "description",
    "config",
    "variants",
    "search",
    "seeds",
    "num_samples",
    "stop_meta_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "scheduler",
    "max_failures",
    "max_concurrent_trials",
    "storage_path",
    "finetune",
)


@dataclass(frozen=True)
class SchedulerSpec:
    """Trial scheduler: FIFO, or ASHA (early stopping of poor trials) for searches."""

    type: str = "fifo"
    metric: str = DEFAULT_METRIC
    mode: str = "max"
    grace_period: int = 1000  # meta-steps before a trial can be stopped
    reduction_factor: int = 3
    max_t: int | None = None  # the run's stop_meta_steps when None


@dataclass(frozen=True)
class TuneSpec:
    """A parsed experiment file; `trial_settings()` lists what each trial would run."""

    name: str
    config: dict[str, Any]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    num_samples: int = 1
    stop_meta_steps: int = 1000
    checkpoint_every: int = 250
    keep_checkpoints: int | None = 2
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    max_failures: int = 2
    max_concurrent_trials: int | None = None
    storage_path: str = "runs/tune"
    finetune: FineTuneConfig | None = None
    description: str = ""

    def base_config(self) -> Any:
        """The shared settings as their algorithm's config (preset first, then the explicit
        settings)."""
        config, _ = config_from_dict(self.config)
        return config

    def part(self, variants: list[str], seeds: list[int] | None) -> TuneSpec:
        """The experiment restricted to some of its variants (all when empty; trials start in
        the order given) and seeds (all when None): one part of a run that spans machines
        (`report/record.py`)."""
        unknown = sorted(set(variants) - set(self.variants))
        if unknown:
            raise RunConfigError(
                f"no variant {unknown} in this experiment",
                f"choose from {sorted(self.variants)}",
            )
        missing = sorted(set(seeds or []) - set(self.seeds))
        if missing:
            raise RunConfigError(
                f"seeds {missing} are not in this experiment's seeds {list(self.seeds)}",
                "choose from them (a part of a run runs the experiment's own trials)",
            )
        chosen = {k: self.variants[k] for k in variants} if variants else self.variants
        return replace(self, variants=chosen, seeds=tuple(seeds) if seeds else self.seeds)

    def trial_settings(self) -> list[dict[str, Any]]:
        """Flat settings of every grid point (variants x seeds x grid values); a sampled
        setting takes one representative value (its low end). Used to validate before running.
        Shared settings only other algorithms have are left out of a trial (`variant` names the
        trial's variant)."""
        axes: list[list[dict[str, Any]]] = [
            [{"variant": name, **overrides} for name, overrides in self.variants.items()] or [{}],
            [{"seed": seed} for seed in self.seeds],
        ]
        for key, value in self.search.items():
            axes.append([{key: v} for v in representative_values(value)])
        trials = []
        for combo in itertools.product(*axes):
            own = {k: v for part in combo for k, v in part.items()}
            label = own.pop("variant", None)
            trials.append({**shared_settings_for(self.config, own), "variant": label})
        return trials

    def validate(self, check_data: bool = True) -> None:
        """Build and validate every trial's config (with its data when `check_data`)."""
        intervals: set[Any] = set()
        for settings in self.trial_settings():
            label = settings.pop("variant", None)
            try:
                config, _ = config_from_dict(settings)
                config.validate(check_data=check_data)
            except RayMacawError as e:
                where = f"variant '{label}', " if label else ""
                raise RunConfigError(
                    f"trial ({where}seed {settings.get('seed')}): {e.problem}", e.fix, e.path
                ) from e
            intervals.add(config.evaluation_interval)
        if self.scheduler.type == "asha":
            self._check_asha(intervals)

    def _check_asha(self, intervals: set[Any]) -> None:
        """ASHA ranks trials on the held-out return: it must be measured before each rung."""
        asha = self.scheduler
        if any(not isinstance(i, int) or i < 1 for i in intervals):
            raise RunConfigError(
                "ASHA needs held-out evaluations, but evaluation_interval is off",
                "set evaluation_interval to a positive number of meta-steps",
            )
        if asha.grace_period < max(intervals):
            raise RunConfigError(
                f"ASHA's grace_period {asha.grace_period} is shorter than the "
                f"evaluation_interval {max(intervals)}: trials would be cut before their first "
                "held-out evaluation",
                "raise scheduler.grace_period or lower evaluation_interval",
            )
        if asha.grace_period > (asha.max_t or self.stop_meta_steps):
            raise RunConfigError(
                f"ASHA's grace_period {asha.grace_period} is beyond the end of the trials "
                f"({asha.max_t or self.stop_meta_steps} meta-steps)",
                "lower scheduler.grace_period or raise stop_meta_steps / scheduler.max_t",
            )

    def to_yaml(self) -> str:
        """The spec as YAML (saved beside the experiment for `ray-macaw report`)."""
        doc = asdict(self)
        if self.finetune is not None:
            doc["finetune"]["budgets"] = list(self.finetune.budgets)
        doc["seeds"] = list(self.seeds)
        return yaml.safe_dump(doc, sort_keys=False)


def representative_values(value: Any) -> list[Any]:
    """The values validation tries: a grid's or choice's every value, a range's two ends."""
    if isinstance(value, list):
        return value
    ((kind, args),) = value.items()
    return list(args) if kind in ("grid_search", "choice") else list(args[:2])


def load_tune_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> TuneSpec:
    """Read and check an experiment file; `overrides` replace shared `config` settings."""
    path = Path(path)
    doc = _read(path)
    if "extends" in doc:
        parent = _read(path.parent / str(doc["extends"]))
        if "extends" in parent:
            raise RunConfigError(
                "an experiment file may extend one file that extends nothing",
                "merge the chain into one base file",
                path,
            )
        config = {**(parent.get("config") or {}), **(doc.get("config") or {})}
        inherited = {k: v for k, v in parent.items() if k != "name"}  # name: this file's own
        doc = {**inherited, **{k: v for k, v in doc.items() if k != "extends"}, "config": config}
    if "config" not in doc:
        raise RunConfigError(
            "an experiment file needs a 'config' section (the settings every trial shares)",
            "see tune_configs/smoke/grid.yaml for the layout",
            path,
        )
    return spec_from_dict(doc, path, overrides or {})


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise DataError(
            "experiment file not found", "check the path (see tune_configs/)", path
        ) from e
    except yaml.YAMLError as e:
        raise RunConfigError(
            f"experiment file is not valid YAML ({e})", "fix the syntax", path
        ) from e
    if not isinstance(doc, dict):
        raise RunConfigError(
            "an experiment file is a mapping of sections", "see tune_configs/", path
        )
    return doc


def spec_from_dict(doc: dict[str, Any], path: Path, overrides: dict[str, Any]) -> TuneSpec:
    """Check every section of an experiment file and build its `TuneSpec`."""
    _refuse_unknown(doc, TOP_KEYS, "experiment key", path)
    config = _expand({**(doc["config"] or {}), **overrides})
    run_keys = sorted(set(config) & RUN_KEYS)
    if run_keys:
        raise RunConfigError(
            f"{run_keys} are run options, not shared settings",
            "give stop_meta_steps / checkpoint_every as top-level keys of the experiment file "
            "(Tune writes under storage_path/name, so out and log_every do not apply)",
            path,
        )
    config_from_dict(config, path)  # unknown or malformed shared settings fail here
    variants = doc.get("variants") or {}
    for name, settings in variants.items():
        # Seeds are their own grid, crossed with every variant.
        _refuse_unknown(settings or {}, VARIABLE - {"seed"}, f"setting of variant '{name}'", path)
        variants[name] = settings or {}
    search = doc.get("search") or {}
    _refuse_unknown(search, VARIABLE, "search setting", path)
    for key, value in search.items():
        _check_sampler(key, value, path)
        if isinstance(value, dict) and next(iter(value)) in ("uniform", "loguniform", "quniform"):
            kind = next(iter(value))  # YAML reads 1e-4 (no dot) as a string
            search[key] = {kind: [_float(x, key, path) for x in value[kind]]}
    clash = set(search) & {k for v in variants.values() for k in v}
    if clash:
        raise RunConfigError(
            f"{sorted(clash)} are set by both 'variants' and 'search'",
            "vary each setting in one place",
            path,
        )
    scheduler = doc.get("scheduler") or {}
    _refuse_unknown(scheduler, SchedulerSpec.__dataclass_fields__, "scheduler key", path)
    if scheduler.get("type", "fifo") not in SCHEDULERS:
        raise RunConfigError(
            f"unknown scheduler type '{scheduler['type']}'", f"use one of {SCHEDULERS}", path
        )
    spec = TuneSpec(
        name=str(doc.get("name", path.stem)),
        description=str(doc.get("description", "")),
        config=config,
        variants=variants,
        search=search,
        seeds=_seeds(doc.get("seeds", [0]), path),
        num_samples=doc.get("num_samples", 1),
        stop_meta_steps=doc.get("stop_meta_steps", TuneSpec.stop_meta_steps),
        checkpoint_every=doc.get("checkpoint_every", TuneSpec.checkpoint_every),
        keep_checkpoints=doc.get("keep_checkpoints", TuneSpec.keep_checkpoints),
        scheduler=SchedulerSpec(**scheduler),
        max_failures=doc.get("max_failures", TuneSpec.max_failures),
        max_concurrent_trials=doc.get("max_concurrent_trials"),
        storage_path=storage_location(doc.get("storage_path", TuneSpec.storage_path)),
        finetune=_finetune(doc.get("finetune"), path),
    )
    _check_counts(spec, path)
    return spec


def _seeds(value: Any, path: Path) -> tuple[int, ...]:
    seeds = _as_list(value)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise RunConfigError(
            f"seeds must be integers, got {value!r}", "write e.g. seeds: [0, 1, 2]", path
        )
    return tuple(seeds)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _finetune(doc: dict[str, Any] | None, path: Path) -> FineTuneConfig | None:
    if doc is None:
        return None
    _refuse_unknown(doc, {*FineTuneConfig.__dataclass_fields__, "preset"}, "finetune key", path)
    doc = dict(doc)
    preset = doc.pop("preset", "authors")
    if "budgets" in doc:
        doc["budgets"] = tuple(_as_list(doc["budgets"]))
    try:
        return FineTuneConfig.preset(preset, **doc)
    except ValueError as e:
        raise RunConfigError(f"finetune: {e}", "fix the finetune section", path) from e


def _check_sampler(key: str, value: Any, path: Path) -> None:
    if isinstance(value, list) and value:
        return
    if isinstance(value, dict) and len(value) == 1:
        ((kind, args),) = value.items()
        if kind in SAMPLERS and isinstance(args, list) and args:
            if kind in ("uniform", "loguniform", "randint") and len(args) != 2:
                raise RunConfigError(
                    f"search '{key}': {kind} takes [low, high]", f"write {kind}: [lo, hi]", path
                )
            if kind == "quniform" and len(args) != 3:
                raise RunConfigError(
                    f"search '{key}': quniform takes [low, high, q]", "add the step q", path
                )
            return
        if kind not in SAMPLERS:
            raise RunConfigError(
                f"search '{key}': unknown sampler '{kind}'",
                f"{did_you_mean(kind, SAMPLERS)}use one of {SAMPLERS}",
                path,
            )
    raise RunConfigError(
        f"search '{key}' must be a non-empty list (a grid) or one sampler mapping",
        "write e.g. [1.0e-4, 3.0e-4] or {loguniform: [1.0e-5, 1.0e-3]}",
        path,
    )


def _float(value: Any, key: str, path: Path) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RunConfigError(
            f"search '{key}': '{value}' is not a number", "write numbers like 1.0e-4", path
        ) from None


def _check_counts(spec: TuneSpec, path: Path) -> None:
    for name in ("num_samples", "stop_meta_steps", "checkpoint_every"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunConfigError(
                f"{name} must be a positive integer, got {value!r}", "fix it", path
            )
    if not isinstance(spec.max_failures, int) or spec.max_failures < -1:
        raise RunConfigError("max_failures must be >= -1 (-1: retry forever)", "fix it", path)
    if not spec.seeds:
        raise RunConfigError("seeds is empty", "give at least one seed, e.g. seeds: [0]", path)


def _refuse_unknown(doc: Any, known: Any, what: str, path: Path) -> None:
    if not isinstance(doc, dict):
        raise RunConfigError(f"expected a mapping for the {what}s, got {doc!r}", "fix it", path)
    for key in doc:
        if key not in known:
            raise RunConfigError(
                f"unknown {what} '{key}'", f"{did_you_mean(key, known)}remove or rename it", path
            )


def _expand(settings: dict[str, Any]) -> dict[str, Any]:
    """Expand ${VARS} and make a local data root absolute: Tune runs trials in their own
    directory."""
    out = dict(settings)
    root = out.get("data_root")
    if isinstance(root, str):
        expanded = os.path.expandvars(root)
        if "$" in expanded:
            raise RunConfigError(
                f"data_root '{root}' names an unset environment variable",
                "export it, or pass --set data_root=/path/to/root",
            )
        out["data_root"] = location(expanded)  # a URI (s3://...) stays as it is
    return out


def storage_location(value: str) -> str:
    """Local paths become absolute (Tune needs that); URIs (s3://, gs://, ...) stay as they are."""
    value = os.path.expandvars(str(value))
    return value if "://" in value else str(Path(value).expanduser().resolve())
