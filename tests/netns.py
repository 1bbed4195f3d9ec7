"""Two network namespaces joined by a veth pair, each with its own address: hosts on one machine.

Made with `ip netns` (root only); nothing is routed out of them, so no packet leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class NamespacesUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no `ip`, no CAP_SYS_ADMIN / CAP_NET_ADMIN)."""


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its address on the veth link and the command prefix to run in it."""

    netns: str
    address: str

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NamespacesUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@contextmanager
def two_hosts(tag: str | None = None) -> Iterator[tuple[Host, Host]]:
    """Make namespaces `<tag>h` and `<tag>w` (addresses 10.<x>.<y>.1 and .2 on a /24 of their own)
    and delete them (and with them the veth pair) afterwards.

    Raises:
        NamespacesUnavailable: The reason they cannot be made, for the test's skip message.
    """
    if shutil.which("ip") is None:
        raise NamespacesUnavailable("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NamespacesUnavailable("making network namespaces needs root")
    tag = tag or f"rm{os.getpid() % 100000}"
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    head, worker = Host(f"{tag}h", f"{subnet}.1"), Host(f"{tag}w", f"{subnet}.2")
    made: list[str] = []
    try:
        for host in (head, worker):
            _ip("netns", "add", host.netns)
            made.append(host.netns)
        _ip("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        for host, link in ((head, f"{tag}a"), (worker, f"{tag}b")):
            _ip("link", "set", link, "netns", host.netns)
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", link)
            _ip("-n", host.netns, "link", "set", link, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        yield head, worker
    finally:
        for netns in made:  # deleting a namespace deletes the veth end inside it
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
