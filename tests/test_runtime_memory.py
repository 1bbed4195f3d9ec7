"""`retain_freed_memory`: freed tensors come back from the heap, not as fresh pages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# A meta-step's allocation pattern, 20 times: 4 gradients of 4 MiB (Cheetah-sized transform
# matrices) and 20 activations of 0.5 MiB, written and freed. Prints the minor page faults.
PROBE = """
import ctypes, json, resource, sys, torch
from ray_macaw.runtime.memory import M_MMAP_THRESHOLD, retain_freed_memory
if sys.argv[1] == "retain":
    took = retain_freed_memory()
else:  # glibc's initial threshold, fixed (its adaptive one reaches this state only sometimes)
    took = bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024))
def step():
    tensors = [torch.empty(10100 * 100).fill_(1.0) for _ in range(4)]
    tensors += [torch.empty(5 * 256 * 100).fill_(1.0) for _ in range(20)]
step()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(json.dumps({"took": took, "faults": faults}))
"""


def probe(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    default, retained = probe("default"), probe("retain")
    assert default["took"] is True and retained["took"] is True
    assert default["faults"] > 20 * 2000  # measured ~6,400 fresh 4 KiB pages per step
    assert retained["faults"] < default["faults"] / 20  # measured ~40 per step
