"""Generator functions for tests/serving/test_worker.py, importable by name in a child process."""
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


def figure_noting_where(note):
    """A figure for the drawing helper (tests/serving/test_drawing.py) that first notes where it was built:
    the process, its niceness, the language and the plots' text size it was asked for."""
    import json
    from pathlib import Path

    from vision_lab import i18n
    from vision_lab.curve_plots import lr_curve
    from vision_lab.plot_style import _text_scale

    Path(note).write_text(json.dumps({"pid": os.getpid(), "nice": os.nice(0), "lang": i18n.current(),
                                      "scale": _text_scale.get()}))
    return lr_curve([{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.01}])


def figure_failing():
    raise ValueError("the sentence a user should see")


def wait_for_stop(stop=None):
    """Runs until its Stop arrives (the child's stop flag is then left set)."""
    import time

    yield "started"
    while not stop.is_set():
        time.sleep(0.01)
    yield "stopped"


def stop_already_set(stop=None):
    yield stop.is_set()


def torch_threads(stop=None):
    import torch

    yield torch.get_num_threads()
