"""The server's training slots (vision_lab.serving.run_queue): first come, first served, a visible place in
line, a clear refusal when the line is full, and nothing left taken."""
import threading

import pytest

pytest.importorskip("gradio")
from vision_lab.serving.run_queue import QueueFull, RunQueue, waiting_message  # noqa: E402


def test_runs_start_in_the_order_they_came():
    q = RunQueue(max_running=1, max_waiting=3)
    a, b, c = q.enter("A"), q.enter("B"), q.enter("C")
    assert (a.admitted, b.admitted, c.admitted) == (True, False, False)
    assert (q.position(a), q.position(b), q.position(c)) == (0, 1, 2)
    q.release(a)
    assert b.admitted and not c.admitted and q.position(c) == 1
    q.release(b)
    assert c.admitted and q.running == 1 and q.waiting == 0
    q.release(c)
    q.release(c)  # twice is harmless
    assert q.running == 0 and q.waiting == 0


def test_a_full_line_is_refused_with_a_sentence():
    q = RunQueue(max_running=1, max_waiting=1)
    q.enter("A"), q.enter("B")
    with pytest.raises(QueueFull, match=r"The server is busy: 1 training\(s\) running and 1 waiting"):
        q.enter("C")


def test_stop_takes_a_waiting_run_out_and_wakes_its_wait():
    q = RunQueue(max_running=1, max_waiting=2)
    a, b = q.enter("A"), q.enter("B")
    woke = []
    t = threading.Thread(target=lambda: woke.append(q.wait(b, timeout=30)))
    t.start()
    assert q.stop("B") == 1
    t.join(5)
    assert woke == [False] and b.stop.is_set() and not a.stop.is_set()
    q.release(b)
    assert q.waiting == 0 and q.running == 1


def test_wait_returns_when_a_slot_frees():
    q = RunQueue(max_running=1, max_waiting=2)
    a, b = q.enter("A"), q.enter("B")
    threading.Timer(0.2, q.release, args=(a,)).start()
    assert q.wait(b, timeout=30) is True


def test_two_slots_run_two_at_once():
    q = RunQueue(max_running=2, max_waiting=0)
    a, b = q.enter("A"), q.enter("B")
    assert a.admitted and b.admitted
    with pytest.raises(QueueFull):
        q.enter("C")


def test_the_waiting_message_says_the_place_in_line():
    q = RunQueue(max_running=1, max_waiting=3)
    q.enter("A")
    b, c = q.enter("B"), q.enter("C")
    assert "number 1** (you are next" in waiting_message(q, b)
    assert "number 2** (1 ahead of you" in waiting_message(q, c)
