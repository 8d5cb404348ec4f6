"""The training process's malloc: keep what a step frees for the next step (glibc on Linux).

Each step of a training loop frees and allocates again the same tensors: activations,
gradients, the optimiser's temporaries. glibc's malloc gives memory back to the system as it
is freed: a block above its mmap threshold (128 KiB at first, raised as such blocks are
freed) is unmapped, and free space at the top of its heap above the trim threshold is
trimmed. The next step then touches fresh pages, each a page fault in the kernel. On the
20 x 256 sigmoid net of SCIENCE.md (batch 256, one thread) a bare PyTorch loop took 170-1,330
minor faults a step, 0.1-2.3 ms of system time on a 20-28 ms step, changing from process to
process and round to round (docs/performance.md, "Seventh pass"); with the thresholds below,
3-19 a step and no system time.

``keep_freed_memory`` is called by the engine's own training processes (the window's worker,
``backprop-lab run``), never on import: a user's own process (Watch in their loop) keeps its
malloc as it is. ``give_back_memory`` returns what is free when a run ends.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20   # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): smaller blocks come from the heap
NEVER_TRIM = -1             # the trim threshold as glibc reads -1: never trim the heap's top
# the user's own malloc settings win (environment variables glibc reads at start-up)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def _glibc():
    """glibc's C library, or None (another OS or C library: nothing to set)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()   # (musl has no such function: AttributeError)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Blocks up to 32 MiB come from the heap and the heap is never trimmed, so a step's freed
    tensors serve the next step without page faults. True where it was set; False where the
    platform has no glibc, the user's environment sets malloc's thresholds, or
    BACKPROP_LAB_KEEP_FREED=0."""
    if os.environ.get("BACKPROP_LAB_KEEP_FREED", "1") == "0" or any(k in os.environ for k in USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def give_back_memory() -> None:
    """Return the heap's free memory to the system (a run has ended: its tensors are gone)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
