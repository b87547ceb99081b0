"""The server's line of trainings (vision_lab.serving.run_queue): first come, first served, one
place per visitor, identical requests sharing one job, a visible place and an estimate of the wait,
a clear refusal when the line is full, and a job nobody watches leaving the line."""
import threading
import time

import pytest

from vision_lab.serving.jobs import RunSpec, Speeds
from vision_lab.serving.once import Once
from vision_lab.serving.run_cache import RunCache
from vision_lab.serving.run_queue import JobView, QueueFull, RunQueue, waiting_message
from vision_lab.train_config import TrainConfig


class Driver:
    """Stands in for training: a job 'runs' until the test finishes it or it is stopped."""

    def __init__(self):
        self.finish = {}

    def __call__(self, job):
        done = self.finish.setdefault(job.key, threading.Event())
        while not done.wait(0.02):
            if job.stop.is_set():
                return

    def end(self, ticket):
        self.finish.setdefault(ticket.job.key, threading.Event()).set()
        deadline = time.time() + 5
        while ticket.job.state == "running" and time.time() < deadline:
            time.sleep(0.01)


def spec(name: str, images: int = 1000, epochs: int = 2, model: str = "cnn") -> RunSpec:
    return RunSpec(TrainConfig(model=model, subset_train=images, epochs=epochs), key=name)


@pytest.fixture
def q(tmp_path):
    driver = Driver()
    queue = RunQueue(max_running=1, max_waiting=3, cache=RunCache(tmp_path / "cache"), drive=driver)
    queue.driver = driver
    return queue


def ask(q, name, visitor=None, **kwargs):
    return q.request("train", [spec(name, **kwargs)], session=visitor or name, visitor=visitor or name)


def test_runs_start_in_the_order_they_came(q):
    a, b, c = ask(q, "A"), ask(q, "B"), ask(q, "C")
    assert (a.admitted, b.admitted, c.admitted) == (True, False, False)
    assert (q.position(a), q.position(b), q.position(c)) == (0, 1, 2)
    q.driver.end(a)
    assert b.admitted and not c.admitted and q.position(c) == 1
    q.driver.end(b)
    assert c.admitted and q.running == 1 and q.waiting == 0
    q.driver.end(c)
    assert q.running == 0 and q.waiting == 0


def test_a_full_line_is_refused_with_a_sentence(q):
    for name in "ABCD":
        ask(q, name)
    with pytest.raises(QueueFull, match=r"The server is busy: 1 training\(s\) running and 3 waiting"):
        ask(q, "E")


def test_identical_requests_share_one_job_and_take_no_place(q):
    first = ask(q, "A")
    waiting = ask(q, "B", visitor="student-1")
    others = [ask(q, "B", visitor=f"student-{i}") for i in range(2, 40)]  # a class: 39 more
    assert all(t.job is waiting.job for t in others) and q.waiting == 1
    assert "38 other visitor(s) asked for the same run(s)" in waiting_message(q, others[0])
    ask(q, "C"), ask(q, "D")                                             # the line still has room
    q.driver.end(first)
    assert waiting.admitted and all(t.admitted for t in others)


def test_one_place_per_visitor_a_second_press_replaces_the_first_in_its_place(q):
    running = ask(q, "A")
    ask(q, "B")
    mine = ask(q, "C", visitor="me")
    ask(q, "D")
    newer = ask(q, "E", visitor="me")
    assert mine.left == "replaced" and mine.stop.is_set() and not mine.job.watchers()
    assert q.waiting == 3 and q.position(newer) == 2                      # where C was
    assert not q.wait(mine, timeout=0.1)
    # The same visitor pressing the same thing again keeps the job (and its place).
    again = ask(q, "E", visitor="me")
    assert again.job is newer.job and newer.left == "replaced" and q.position(again) == 2
    # A visitor's running job does not count: they may queue one more.
    q.stop("B")
    assert ask(q, "F", visitor="A").job is not running.job and q.waiting == 3


def test_a_waiting_job_nobody_watches_leaves_the_line(q):
    ask(q, "A")
    alone = ask(q, "B")
    shared_1, shared_2 = ask(q, "C", visitor="x"), ask(q, "C", visitor="y")
    q.closed(alone)                              # its page closed (or its client disconnected)
    assert alone.job.state == "left" and q.waiting == 1
    q.closed(shared_1)                           # one of two watchers left: it stays
    assert q.waiting == 1 and q.position(shared_2) == 1
    q.leave(shared_2, "stopped")
    assert q.waiting == 0


def test_a_handler_closed_while_waiting_takes_its_job_out(q):
    ask(q, "A")
    ticket = ask(q, "B")

    def handler():
        with q.following(ticket):
            yield from q.wait_in_line(ticket, poll=0.01, every=0.0)

    gen = handler()
    assert "Waiting in line: number 1" in next(gen)
    gen.close()                                  # what gradio does when the client is gone
    assert ticket.job.state == "left" and q.waiting == 0


def test_stop_takes_a_waiting_run_out_and_wakes_its_wait(q):
    a, b = ask(q, "A"), ask(q, "B")
    woke = []
    t = threading.Thread(target=lambda: woke.append(q.wait(b, timeout=30)))
    t.start()
    assert q.stop("B") == 1
    t.join(5)
    assert woke == [False] and b.left == "stopped" and not a.stop.is_set()
    assert q.waiting == 0 and q.running == 1


def test_a_running_job_goes_on_while_someone_watches_and_stops_when_nobody_does(q):
    one, two = ask(q, "A", visitor="one"), ask(q, "A", visitor="two")
    assert one.admitted and two.admitted
    q.stop("one")
    assert one.left == "stopped" and not one.job.stop.is_set()
    q.stop("two")
    # The last one stops it, and still follows it to its end (the kept epoch).
    assert two.job.stop.is_set() and two.left is None and two.stop.is_set()


def test_a_closed_page_lets_its_run_finish_when_the_server_says_so(q):
    ticket = q.request("train", [spec("A")], session="s", finish_when_closed=True)
    q.closed(ticket)
    assert ticket.closed and ticket.left is None and not ticket.job.stop.is_set()


def test_eta_adds_up_the_work_ahead_at_the_measured_speed(q):
    q.speeds.images_per_sec["cnn"], q.speeds.overhead = 1000.0, 0.0
    running = ask(q, "A", images=1000, epochs=10)       # 10 s
    b = ask(q, "B", images=500, epochs=4)               # 2 s
    c = ask(q, "C", images=3000, epochs=1, model="mlp")  # at the mlp's speed
    assert 9.0 <= q.eta(b) <= 10.0
    assert 11.0 <= q.eta(c) <= 12.0
    assert "Your turn in about 10 s" in waiting_message(q, b)
    q.driver.end(running)
    assert q.eta(b) == 0.0 and 0.0 < q.eta(c) <= 2.0


def test_speeds_learn_from_finished_runs():
    speeds = Speeds()
    config = TrainConfig(model="cnn", subset_train=2000, epochs=2)
    history = [{"seconds": 2.0}, {"seconds": 2.0}]   # 4,000 images in 4 s
    for _ in range(8):
        speeds.measured(config, history, wall=5.0)
    assert speeds.images_per_sec["cnn"] == pytest.approx(1000, rel=0.01)
    assert speeds.overhead == pytest.approx(1.0, rel=0.05)
    assert speeds.estimate(config) == pytest.approx(5.0, rel=0.05)


def test_the_waiting_message_says_the_place_in_line(q):
    ask(q, "A")
    b, c = ask(q, "B"), ask(q, "C")
    assert "number 1** (you are next" in waiting_message(q, b)
    assert "number 2** (1 ahead of you" in waiting_message(q, c)


def test_a_watcher_reads_the_job_from_its_start_and_then_its_end(q):
    ticket = ask(q, "A")
    ticket.job.items.extend(["status", "epoch 1"])
    late = ask(q, "A", visitor="late")
    view = JobView(q, late)
    assert [view.get(0.1), view.get(0.1)] == ["status", "epoch 1"]
    q.driver.end(ticket)
    assert view.get(1.0) is None


def test_once_makes_a_value_once_for_callers_at_the_same_moment():
    once, made = Once(size=2), []

    def make():
        made.append(1)
        time.sleep(0.2)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(once.get("k", make))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["value"] * 8 and len(made) == 1


class _SlowCache(RunCache):
    """A run cache whose `put` waits until the test lets it finish."""

    def __init__(self, folder):
        super().__init__(folder)
        self.putting, self.finish = threading.Event(), threading.Event()

    def put(self, *args, **kwargs):
        self.putting.set()
        assert self.finish.wait(30)
        return super().put(*args, **kwargs)


def test_the_next_job_trains_while_the_last_one_keeps_its_run(tmp_path, monkeypatch):
    """A job's slot is free once its last run has ended in its process: the next one in line
    starts training while the first is still keeping its run in the cache."""
    import queue as queues

    from vision_lab.serving import worker
    from vision_lab.train_config import RunEnd

    started = []

    class FinishedRun:
        def __init__(self, config, data, stop=None):
            started.append(config)
            self.events = queues.Queue()
            self.events.put(RunEnd(reason="completed", message="done", best_epoch=1,
                                   history=[{"epoch": 1, "seconds": 0.1}], checkpoint=None,
                                   metrics={}))
            self.events.put(None)

    monkeypatch.setattr(worker, "train_in_process", FinishedRun)
    cache = _SlowCache(tmp_path / "cache")
    q = RunQueue(max_running=1, max_waiting=3, cache=cache, work_dir=tmp_path / "work")
    first = q.request("train", [spec("A")], session="a", load_data=lambda: None)
    assert cache.putting.wait(10)
    second = q.request("train", [spec("B")], session="b", load_data=lambda: None)
    assert q.wait(second, timeout=10), "the next job waited for the first one's cache"
    deadline = time.time() + 10
    while len(started) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert len(started) == 2 and first.job.state == "running"   # still keeping its run
    cache.finish.set()
    deadline = time.time() + 10
    while (first.job.state, second.job.state) != ("done", "done") and time.time() < deadline:
        time.sleep(0.01)
    assert (first.job.state, second.job.state) == ("done", "done") and q.running == 0
    assert cache.get("A") is not None and cache.get("B") is not None
