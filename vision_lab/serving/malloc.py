"""glibc malloc settings for a process that trains.

A conv net's training step allocates and frees tens of MB of activations. With glibc's defaults
those large blocks come from fresh mmaps and go back to the system when freed, so every step
page-faults them in again: on a 2-core VM that was a quarter of the cnn's step time (10,000 faults
per step; benchmarks/floor.py --allocator measured the floor at 1.34x with the setting below).
Keeping freed memory costs nothing but this: the process's memory stays at its peak until it
exits, which is why only processes that exist to train (the CLI's `train`, the app's run
processes) call it, never the app's server.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h


def keep_freed_memory() -> bool:
    """Make malloc keep freed memory for reuse: blocks up to 32 MB come from the heap (not a
    fresh mmap each), and the heap is not trimmed. Both are needed: setting either one turns off
    glibc's adaptive mmap threshold, and the trim threshold alone made training slower.
    Process-wide; returns False where it could not be set (not glibc, not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))
