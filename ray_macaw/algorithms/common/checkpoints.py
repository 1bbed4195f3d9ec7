"""Opening MACAW and Offline PEARL checkpoints safely: a clear error for a wrong path, another
format version, or a checkpoint of another algorithm, family or network shape, instead of a
traceback from deep in torch.

RLlib checkpoints hold pickled state, so they are only ever read from a path the user names
(`ray-macaw evaluate / finetune CKPT`, `train --resume` reading its own `out`); see
docs/security.md.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from ray_macaw.errors import MissingDataError, RayMacawError
from ray_macaw.version import __version__

FORMAT = 1  # bumped when the checkpoint state changes incompatibly


class CheckpointError(RayMacawError, ValueError):
    """A checkpoint that cannot be loaded into this algorithm."""


def stamp(algo: Any) -> dict[str, Any]:
    """What a checkpoint records about the run that wrote it."""
    return {
        "format": FORMAT,
        "ray_macaw_version": __version__,
        "algorithm": type(algo).__name__,
        "family": algo.config.family,
        "obs_dim": algo.model_config.obs_dim,
        "act_dim": algo.model_config.act_dim,
        "hidden": list(algo.model_config.hidden),
    }


def check_compatible(saved: dict[str, Any] | None, algo: Any) -> None:
    """Refuse state from a newer format or from a run with another family or network shape."""
    if saved is None:
        return  # written before stamps existed (format 0): the shapes are checked by torch
    if saved["format"] > FORMAT:
        raise CheckpointError(
            f"the checkpoint has format {saved['format']} (ray-macaw "
            f"{saved['ray_macaw_version']}); this ray-macaw ({__version__}) reads up to {FORMAT}",
            "upgrade ray-macaw to the version that wrote it",
        )
    mine = stamp(algo)
    saved = {"algorithm": "MACAW", **saved}  # stamps before Offline PEARL were all MACAW's
    keys = ("algorithm", "family", "obs_dim", "act_dim", "hidden")
    differ = [k for k in keys if saved[k] != mine[k]]
    if differ:
        what = ", ".join(f"{k} {saved[k]} (not {mine[k]})" for k in differ)
        raise CheckpointError(
            f"the checkpoint was written by a run with {what}",
            "restore it into a config with the same family and network settings, or load it "
            "with MACAW.from_checkpoint(path), which rebuilds its own config",
        )


def open_checkpoint(path: str | Path) -> Any:
    """The `MACAW` or `PEARL` saved at `path` (RLlib records the class), with fix-it errors for
    paths that are not checkpoints, or incomplete or broken ones."""
    from ray.rllib.algorithms.algorithm import Algorithm

    path = Path(path).expanduser().resolve()  # RLlib's pyarrow filesystem wants absolute paths
    _check_files(path)
    try:
        return Algorithm.from_checkpoint(str(path))
    except RayMacawError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        AttributeError,
        ValueError,
        TypeError,
        OSError,
        ImportError,
    ) as e:
        raise CheckpointError(
            f"the checkpoint cannot be read ({type(e).__name__}: {str(e)[:200]})",
            "it is incomplete or from an incompatible version; use another checkpoint",
            path,
        ) from e


def _check_files(path: Path) -> None:
    """The files RLlib reads first: present, and its JSON readable."""
    meta = path / "rllib_checkpoint.json"
    if not meta.is_file():
        raise MissingDataError(
            "no checkpoint here (rllib_checkpoint.json is missing)",
            "give the checkpoint directory, e.g. OUT/latest of `ray-macaw train`",
            path,
        )
    try:
        doc = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"rllib_checkpoint.json is not valid JSON ({e})",
            "the checkpoint is damaged; use another one (e.g. OUT/latest.previous)",
            meta,
        ) from e
    if not isinstance(doc, dict) or "state_file" not in doc:
        raise CheckpointError(
            "rllib_checkpoint.json has no 'state_file'",
            "the checkpoint is damaged; use another one (e.g. OUT/latest.previous)",
            meta,
        )
    for key in ("state_file", "class_and_ctor_args_file"):
        name = Path(str(doc.get(key, ""))).name
        if name and not any((path / f"{name}{ext}").is_file() for ext in ("", ".pkl", ".msgpack")):
            raise MissingDataError(
                f"the checkpoint's {key.removesuffix('_file')} file {name} is missing",
                "the checkpoint is incomplete; use another one (e.g. OUT/latest.previous)",
                path / name,
            )
