"""Generator functions for tests/test_worker.py, importable by name in a child process."""
import os
import signal


def count(n, stop=None):
    for i in range(n):
        yield i


def yield_then_die(stop=None):
    yield "first"
    yield "second"
    os.kill(os.getpid(), signal.SIGKILL)
    yield "never"


def raise_value_error(stop=None):
    yield "before"
    raise ValueError("the sentence a user should see")


class _Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle


def raise_unpicklable(stop=None):
    yield "before"
    raise _Unpicklable("a lambda inside makes this unpicklable", lambda: None)


def tensor_sums(data, stop=None):
    yield {"train": int(data.train_images.sum()), "test": int(data.test_images.sum()),
           "classes": data.classes, "dtype": str(data.train_images.dtype)}


def niceness_of_threads(stop=None):
    """The niceness of this process's first thread and of a thread it starts (torch's OpenMP
    workers are such threads)."""
    import threading

    seen = []
    worker = threading.Thread(target=lambda: seen.append(os.nice(0)))
    worker.start()
    worker.join()
    yield {"main": os.nice(0), "thread": seen[0]}
