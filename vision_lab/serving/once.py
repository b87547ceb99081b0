"""Doing something once for many askers: what a class of visitors asks for at the same moment
(a lesson's data, its figures) is made once, and everyone gets it."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable


class Once:
    """`get(key, make)`: the first caller makes the value, callers meanwhile wait for it, later
    callers get it from memory (the last `size` values). For what many visitors ask at the same
    moment: a lesson's data, its figures."""

    def __init__(self, size: int = 32):
        self.size = size
        self._lock = threading.Lock()
        self._values: OrderedDict = OrderedDict()
        self._making: dict = {}

    def get(self, key, make: Callable):
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
                making = self._making.get(key)
                if making is None:
                    making = self._making[key] = threading.Event()
                    mine = True
                else:
                    mine = False
            if not mine:
                making.wait()
                with self._lock:
                    if key in self._values:
                        return self._values[key]
                continue        # the maker failed: try ourselves
            try:
                value = make()
                with self._lock:
                    self._values[key] = value
                    while len(self._values) > self.size:
                        self._values.popitem(last=False)
                return value
            finally:
                with self._lock:
                    del self._making[key]
                making.set()


# Many visitors asking for the same data at once build it once (ui.common.load_data then keeps it).
LOADING = Once(size=0)

