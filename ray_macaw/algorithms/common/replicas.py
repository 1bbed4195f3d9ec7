"""Data-parallel replicas in a torch.distributed group: joining it, the gradient all-reduce,
the balanced split of a step's tasks, and the training state a replica hands over (issue 16).

The meta-loss is a sum over tasks, so its exact second-order gradient is a sum of per-task
gradients (architecture.md): each replica computes the gradient of its share of the step's tasks
with plain autograd (double backward included; torch DDP does not support it, pytorch issue
63929), one all-reduce sums the shares, and every replica takes the same Adam step. No weights
travel per step. The group is gloo on the CPU and NCCL on GPUs, set up over Ray actors as Ray
Train sets up its torch workers (rank 0 hosts torch's TCPStore at its Ray node address, the others
join it), with one difference: the store listens on that address only, not on every interface
as `init_method="tcp://..."` makes it, so on the embedded local Ray (127.0.0.1) nothing listens
beyond loopback (docs/security.md).
"""

from __future__ import annotations

import copy
import fcntl
import os
import socket
import struct
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import ray
import torch
import torch.distributed as dist

from ray_macaw.algorithms.common.devices import to_cpu

T = TypeVar("T")
# How long a replica waits in a collective for its peers. A dead peer fails the all-reduce at once
# (its connection closes); this bounds a peer that hangs without dying.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def split_balanced(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` in `parts` consecutive shares whose sizes differ by at most one, so that no share
    holds more than ceil(len(items) / parts), whatever the items are."""
    size, extra = divmod(len(items), parts)
    shares, start = [], 0
    for part in range(parts):
        stop = start + size + (part < extra)
        shares.append(list(items[start:stop]))
        start = stop
    return shares


def backend_for(device: torch.device) -> str:
    """gloo for CPU tensors, NCCL for CUDA ones."""
    return "nccl" if device.type == "cuda" else "gloo"


def open_rendezvous() -> socket.socket:
    """Rank 0's listening socket for the group's store: on this node's Ray address, at a port
    the system picks (held open until the store takes it, so no other process can take it)."""
    address = ray.util.get_node_ip_address()
    listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    listener.bind((address, 0))
    listener.listen()
    return listener


SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def interface_of(address: str) -> str | None:
    """The network interface whose IPv4 address is `address` (None if none here is)."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                request = struct.pack("256s", name.encode()[:15])
                reply = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on this interface
                continue
        if socket.inet_ntoa(reply[20:24]) == address:
            return name
    return None


def join_group(
    rank: int,
    world_size: int,
    address: str,
    port: int,
    backend: str,
    listener: socket.socket | None = None,
) -> None:
    """Join (or, after a lost peer, join again) the replicas' group whose store rank 0 hosts at
    address:port; rank 0 passes its `open_rendezvous` socket, which the store then owns."""
    leave_group()
    if backend == "nccl":  # as Ray Train: a failed or timed-out NCCL collective raises
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    interface = interface_of(ray.util.get_node_ip_address())
    if backend == "gloo" and interface is not None:
        # gloo otherwise picks the address the host name resolves to, which another host (or
        # network namespace) may not reach; the Ray node address is the one peers reach.
        os.environ["GLOO_SOCKET_IFNAME"] = interface
    store = dist.TCPStore(
        address,
        port,
        world_size,
        is_master=listener is not None,
        timeout=COLLECTIVE_TIMEOUT,
        master_listen_fd=None if listener is None else listener.detach(),
    )
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT
    )


def leave_group() -> None:
    """Leave the group this process is in, if any (a broken one too)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GradientReducer:
    """Sums the parameters' `.grad` over the replicas in one all-reduce of one flat buffer.

    The buffer also carries, per parameter, whether any replica has a gradient for it (a
    parameter no replica's tasks reach keeps `.grad` None, so Adam skips it as in the driver),
    and a few flags summed alike (e.g. how many replicas saw a non-finite loss). The buffer is
    kept between steps: a fresh one per step pays its page faults again (benchmarks/RESULTS.md).
    """

    def __init__(self, parameters: Sequence[torch.nn.Parameter], num_flags: int) -> None:
        self.parameters = list(parameters)
        self.sizes = [p.numel() for p in self.parameters]
        self.total = sum(self.sizes)
        self.num_flags = num_flags
        count = self.total + len(self.parameters) + num_flags
        self.flat = torch.zeros(count, device=self.parameters[0].device)

    @property
    def nbytes(self) -> int:
        """Bytes each replica contributes to the step's one all-reduce."""
        return self.flat.numel() * self.flat.element_size()

    def all_reduce(self, flags: Sequence[float]) -> list[float]:
        """Replace every `.grad` by its sum over the replicas; returns the summed `flags`."""
        flat, total = self.flat, self.total
        flat.zero_()
        offset = 0
        for i, (param, size) in enumerate(zip(self.parameters, self.sizes, strict=True)):
            if param.grad is not None:
                flat[offset : offset + size].copy_(param.grad.reshape(-1))
                flat[total + i] = 1.0
            offset += size
        flat[total + len(self.parameters) :] = torch.tensor(flags, dtype=flat.dtype)
        dist.all_reduce(flat)
        has_grad = flat[total : total + len(self.parameters)].tolist()
        offset = 0
        for param, size, present in zip(self.parameters, self.sizes, has_grad, strict=True):
            view = flat[offset : offset + size].view_as(param)
            param.grad = view if present > 0 else None
            offset += size
        return flat[total + len(self.parameters) :].tolist()


def training_state(
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    with_grads: bool = False,
) -> dict[str, Any]:
    """The model's weights and the optimisers' state (and the gradients), on the CPU."""
    state: dict[str, Any] = {
        "model": to_cpu(model.state_dict()),
        "optimizers": {k: to_cpu(copy.deepcopy(o.state_dict())) for k, o in optimizers.items()},
    }
    if with_grads:
        state["grads"] = {
            n: None if p.grad is None else p.grad.detach().cpu()
            for n, p in model.named_parameters()
        }
    return state


def load_training_state(
    model: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], state: Mapping
) -> None:
    """Inverse of `training_state` (onto the model's device)."""
    model.load_state_dict(state["model"])
    for name, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    grads = state.get("grads")
    if grads is not None:
        for name, param in model.named_parameters():
            grad = grads[name]
            param.grad = None if grad is None else grad.to(param.device)
