"""The one LRU cache the app keeps its slow-to-make things in (vision_lab.lru): what it keeps,
what it drops first, and many threads at once."""
import sys
import threading

import pytest

from vision_lab.lru import LRU


def test_it_keeps_at_most_size_values_and_drops_the_oldest_first():
    cache = LRU(3)
    for key in "abcd":
        cache.put(key, key.upper())
    assert len(cache) == 3
    assert "a" not in cache and all(key in cache for key in "bcd")


def test_a_value_used_again_is_dropped_last():
    cache, made = LRU(2), []

    def make(key):
        made.append(key)
        return key.upper()

    assert cache.get_or_make("a", lambda: make("a")) == "A"
    cache.get_or_make("b", lambda: make("b"))
    assert cache.get_or_make("a", lambda: make("a")) == "A"  # kept: not made again
    cache.get_or_make("c", lambda: make("c"))  # drops b, the least recently used, not a
    assert "a" in cache and "b" not in cache and "c" in cache
    assert made == ["a", "b", "c"]


def test_put_of_a_kept_key_replaces_its_value_and_makes_it_the_newest():
    cache = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    cache.put("c", 4)  # drops b: a was put last but one
    assert cache.get_or_make("a", lambda: None) == 3
    assert "b" not in cache and len(cache) == 2


def test_a_failed_make_keeps_nothing_and_the_next_caller_tries_again():
    cache = LRU(2)

    def broken():
        raise OSError("no such file")

    with pytest.raises(OSError):
        cache.get_or_make("a", broken)
    assert "a" not in cache and len(cache) == 0
    assert cache.get_or_make("a", lambda: 1) == 1


def test_size_zero_keeps_nothing():
    cache = LRU(0)
    assert cache.get_or_make("a", lambda: 1) == 1
    assert len(cache) == 0


def test_a_slow_make_does_not_keep_other_visitors_waiting():
    """The lock is not held while a value is made: one slow checkpoint load must not stall every
    other visitor's request for what is already kept."""
    cache, release, started = LRU(4), threading.Event(), threading.Event()
    cache.put("kept", 1)

    def slow():
        started.set()
        release.wait(10)
        return 2

    loader = threading.Thread(target=lambda: cache.get_or_make("slow", slow))
    loader.start()
    assert started.wait(10)
    answers = []
    other = threading.Thread(target=lambda: answers.append(
        (cache.get_or_make("kept", lambda: None), cache.get_or_make("new", lambda: 3), len(cache))))
    other.start()
    other.join(5)
    finished_while_loading = not other.is_alive()
    release.set()
    loader.join(10)
    other.join(10)
    assert finished_while_loading and answers == [(1, 3, 2)]
    assert cache.get_or_make("slow", lambda: None) == 2


def test_many_threads_at_once_keep_it_consistent():
    """Eight visitors hammering overlapping keys: every answer is the key's own value, and the
    cache never holds more than its size (an unlocked OrderedDict raises or overfills here)."""
    cache, size, errors, oversize = LRU(4), 4, [], []
    start = threading.Barrier(8)

    def visitor(offset):
        start.wait()
        try:
            for i in range(20000):
                key = (i + offset) % 9
                if cache.get_or_make(key, lambda key=key: key * 10) != key * 10:
                    errors.append(key)
                if len(cache) > size:
                    oversize.append(len(cache))
        except Exception as e:  # a KeyError from a key another thread dropped meanwhile
            errors.append(e)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns every few operations, not every 5 ms
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and oversize == []
    assert len(cache) == size
