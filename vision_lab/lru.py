"""A small least-recently-used cache, safe to share between the threads that serve visitors.

The app keeps the last few of what is slow to make and asked for again and again: checkpoints
loaded, datasets built, a checkpoint's predictions on its test set, checkpoint headers read. Each
is an `LRU(size)` at module level, and `get_or_make(key, make)` is the whole pattern:

    _MODELS = LRU(6)
    ckpt = _MODELS.get_or_make(key, lambda: load_checkpoint(path))

The lock is held only to look up and to store, never while `make` runs: one slow load must not
keep other visitors from what is already there. Two visitors asking for the same missing key at
once may each make it (the later one stored wins); where that costs too much, the caller shares
one making (`serving.once.Once`).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable


class LRU:
    """The last `size` values by key, the least recently used dropped first."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key, make: Callable[[], object]):
        """The value kept for `key` (now the most recently used), else `make()`, kept. An
        exception from `make` keeps nothing."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()
        self.put(key, value)
        return value

    def put(self, key, value) -> None:
        """Keep `value` for `key` as the most recently used, dropping the oldest beyond `size`."""
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)
