"""Keep freed memory in the process for reuse, rather than returning it to the OS at once.

glibc's malloc serves blocks above its mmap threshold (128 KiB at first, then adapted to what
is freed) with fresh `mmap` pages and trims the heap's top when much of it is free, so a
meta-step that allocates and frees the same tensors each step (activations of 0.5 MB,
transform-matrix gradients of 4 MB at Cheetah sizes) takes a page fault per 4 KiB of many of
them every step: about 3,800 faults per standard meta-step, 10-15% of its time on one core
(issue 21, benchmarks/RESULTS.md). Raising both thresholds makes freed blocks come back from
the heap. Peak memory is unchanged; memory freed after the peak stays with the process.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**30  # trim the heap's top only when a GiB of it is free


def retain_freed_memory() -> bool:
    """Set glibc's mmap threshold to its maximum and its trim threshold to 1 GiB in this process.

    Returns:
        Whether the settings took effect (False off Linux/glibc, where nothing is changed).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
