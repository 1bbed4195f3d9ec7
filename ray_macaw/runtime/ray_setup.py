"""Join a Ray cluster or start an embedded local one, the same way for every command; check that
what a command asks of the cluster can ever be granted (instead of waiting forever)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ray

from ray_macaw.errors import RayMacawError

LOOPBACK = "127.0.0.1"
# How long a request larger than every node of a cluster waits for its autoscaler to add one.
RESOURCE_WAIT_ENV = "RAY_MACAW_RESOURCE_WAIT_S"
DEFAULT_RESOURCE_WAIT_S = 300.0
POLL_S = 5.0


class ResourceError(RayMacawError, RuntimeError):
    """A command asks for more CPUs or GPUs than the cluster has (or gained in time)."""


def ensure_ray(address: str | None = None, **init_kwargs: Any) -> bool:
    """Connect to `address` (or `RAY_ADDRESS`), else start a local Ray; True if this call did.

    A local instance is bound to 127.0.0.1: its control plane, object manager, workers and
    dashboard listen on loopback only, and Ray's token authentication stays on. An already
    initialised Ray is reused.
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **init_kwargs)
    else:
        init_kwargs.setdefault("dashboard_host", LOOPBACK)
        init_kwargs.setdefault("_node_ip_address", LOOPBACK)
        with _loopback_only():
            ray.init(**init_kwargs)
    return True


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Keep 127.0.0.1 as the node's address while a local Ray starts.

    On Linux Ray replaces 127.0.0.1 by the host's network address (and its gRPC servers, object
    manager and agents then listen on every interface) unless "clusters" are disabled; that
    switch is read from the environment by Ray's processes and, in this process, from
    `ray_constants`. Both are set for the start only: the processes started keep it, a later
    `ray.init(address=...)` in this process does not.
    """
    from ray._private import ray_constants

    previous_env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    previous = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous
        if previous_env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = previous_env


def started_here() -> bool:
    """Whether this process started the Ray it is connected to (an embedded local Ray, which
    no autoscaler grows), not joined a cluster."""
    node = getattr(ray._private.worker, "_global_node", None)  # the only place Ray says so
    return bool(getattr(node, "head", False))


def _alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def unmet(demands: Sequence[Mapping[str, float]]) -> str | None:
    """Why `demands` (held at the same time) cannot all be granted now, or None if they can.

    Each demand must fit one node; their sum must fit the cluster.
    """
    nodes = _alive_nodes()
    for demand in demands:
        if not any(all(node.get(k, 0.0) >= v for k, v in demand.items() if v) for node in nodes):
            wanted = ", ".join(f"{v:g} {k}" for k, v in demand.items() if v)
            biggest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
            return f"one of them needs {wanted}; the largest node has {biggest:g} CPU"
    for key in {k for demand in demands for k in demand}:
        total = sum(demand.get(key, 0.0) for demand in demands)
        have = sum(node.get(key, 0.0) for node in nodes)
        if total > have + 1e-9:
            return f"together they need {total:g} {key}; the cluster has {have:g}"
    return None


def check_resources(
    what: str,
    demands: Sequence[Mapping[str, float]],
    fix: str,
    *,
    log: Callable[[str], Any] = print,
) -> None:
    """Refuse `demands` the cluster can never grant, in one line, before asking Ray for them.

    On a local Ray started by this command the answer is immediate. On a cluster (whose
    autoscaler may add nodes) the check waits up to `RAY_MACAW_RESOURCE_WAIT_S` seconds (300 by
    default), saying what is pending, before it fails.

    Args:
        what: What asks, e.g. "collect's 3 collector actors".
        demands: The resources each actor or task reserves, all held at the same time.
        fix: The setting to change.
        log: Where the waiting message goes.

    Raises:
        ResourceError: The demands do not fit (after the wait, on a cluster).
    """
    reason = unmet(demands)
    if reason is None:
        return
    if started_here():
        raise ResourceError(f"{what} cannot run on the local Ray: {reason}", fix)
    wait_s = float(os.environ.get(RESOURCE_WAIT_ENV, DEFAULT_RESOURCE_WAIT_S))
    log(f"pending: {what} ({reason}); waiting up to {wait_s:g} s for the cluster to grow")
    deadline = time.monotonic() + wait_s
    while reason is not None and time.monotonic() < deadline:
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        reason = unmet(demands)
    if reason is not None:
        raise ResourceError(
            f"{what} did not fit the cluster within {wait_s:g} s ({RESOURCE_WAIT_ENV}): {reason}",
            f"{fix}, add nodes, or raise {RESOURCE_WAIT_ENV}",
        )
