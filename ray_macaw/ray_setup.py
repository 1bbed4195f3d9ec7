"""Join a Ray cluster or start an embedded local one, the same way for every command."""

from __future__ import annotations

import os

import ray


def ensure_ray(address: str | None = None, **init_kwargs) -> bool:
    """Connect to `address` (or `RAY_ADDRESS`), else start a local Ray; True if this call did.

    A local instance binds its dashboard to 127.0.0.1 only. An already initialised Ray is reused.
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **init_kwargs)
    else:
        init_kwargs.setdefault("dashboard_host", "127.0.0.1")
        ray.init(**init_kwargs)
    return True
