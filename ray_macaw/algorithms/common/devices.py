"""Where the model, its optimisers and the batches live: the `device` setting (issue 21).

`auto` is CUDA when Ray gave this process a GPU (an inner-loop worker with
`num_gpus_per_inner_worker`, or a driver started with one) and torch can use it, else the CPU.
GPU requests that cannot be served fail at `validate()`, not at the first meta-step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import ray
import torch

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")


def ray_gave_gpu() -> bool:
    """Whether Ray assigned this process a GPU (False outside Ray)."""
    return ray.is_initialized() and bool(ray.get_gpu_ids())


def resolve_device(setting: str) -> torch.device:
    """The torch device of a `device` setting, in this process."""
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        return torch.device("cuda")
    if setting == "auto":
        use_cuda = torch.cuda.is_available() and ray_gave_gpu()
        return torch.device("cuda" if use_cuda else "cpu")
    raise ValueError(f"unknown device {setting!r}; use one of {DEVICES}")


def cluster_has_gpu() -> bool:
    """A GPU torch can use here, or one in the Ray cluster this process is connected to."""
    if torch.cuda.is_available():
        return True
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def gpu_request_problem(device: str, num_gpus_per_inner_worker: float) -> str | None:
    """Why the settings ask for a GPU that is not there (None when they can be served)."""
    if device not in DEVICES:
        return f"device must be one of {DEVICES}, got {device!r}"
    if device == "cuda" and not torch.cuda.is_available():
        return "device='cuda' but torch sees no CUDA GPU on this machine"
    if num_gpus_per_inner_worker > 0 and not cluster_has_gpu():
        return (
            f"num_gpus_per_inner_worker={num_gpus_per_inner_worker} but neither this machine "
            "nor the Ray cluster has a GPU"
        )
    return None


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch's columns on `device` (a no-op on the CPU): once per meta-step, for all tasks."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def to_cpu(tree: Any) -> Any:
    """Tensors in nested dicts / lists / tuples moved to the CPU (checkpoints and weights sent
    to other processes load on any device)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, Mapping):
        return {k: to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(to_cpu(v) for v in tree)
    return tree
