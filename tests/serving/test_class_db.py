"""The class's database (vision_lab.serving.class_db) keeps what a class makes like data: it is all
there after a restart and in another process, a process killed at any moment (kill -9) loses
nothing it acknowledged, writers at the same moment cannot pass a cap, a database from a newer
Vision Lab is refused, and what a person types or floods is refused with a sentence."""
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT
from vision_lab.serving import class_db as class_db_module
from vision_lab.serving.class_db import (DB_NAME, MAX_NAME, PER_MINUTE, SCHEMA_VERSION, ClassDB,
                                         ClassError, plain_name)

SPLIT = {"subset_train": 1000, "subset_test": 200, "val_fraction": 0.1, "data_seed": 0}
DIGITS = [str(d) for d in range(10)]


def a_board(db):
    return db.open_board("Shapes contest", "shapes", SPLIT, max_epochs=2, max_images=1000)


def an_entry(db, board_id, visitor, n=0, val=0.9, test=0.8):
    token = f"{visitor}-run-{n}"
    db.add_board_run(board_id, visitor, token, {"model": "cnn", "lr": 0.01}, val, test, 1.5, 2)
    return db.submit(token, visitor, f"student {visitor}")


def files_on_disk(folder):
    return sorted(p.relative_to(folder).as_posix() for p in (folder / "drawings").glob("*/*"))


# ---- restart -------------------------------------------------------------------------------------

def test_everything_is_read_back_after_closing_and_reopening(tmp_path):
    db = ClassDB(tmp_path)
    board = a_board(db)
    first = an_entry(db, board.id, "ana", val=0.91, test=0.87)
    second = an_entry(db, board.id, "李雷", val=0.95, test=0.83)
    db.reveal(board.id)
    collection = db.open_collection("手写数字", ["零", "一", "二"], per_student=5, total=20)
    drawing = db.add_drawing(collection.id, "一", "ana", b"\x89PNG one")
    db.close()

    again = ClassDB(tmp_path)
    [kept] = again.boards()
    assert (kept.name, kept.dataset, kept.data, kept.state) == ("Shapes contest", "shapes", SPLIT, "revealed")
    assert kept.revealed is not None and (kept.max_epochs, kept.max_images) == (2, 1000)
    entries = again.entries(board.id)
    assert [(e.id, e.nickname, e.val_acc, e.test_acc, e.settings) for e in entries] == [
        (first.id, "student ana", 0.91, 0.87, {"model": "cnn", "lr": 0.01}),
        (second.id, "student 李雷", 0.95, 0.83, {"model": "cnn", "lr": 0.01})]
    assert again.current_collection().classes == ["零", "一", "二"]
    [back] = again.drawings(collection.id)
    assert (back.id, back.label, back.visitor) == (drawing.id, "一", "ana")
    assert again.drawing_path(back).read_bytes() == b"\x89PNG one"
    assert again.counts(collection.id, "ana").by_label == {"零": 0, "一": 1, "二": 0}
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def run_python(code: str, *args: str, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=True)


WRITER = """
import sys
from vision_lab.serving.class_db import ClassDB
db = ClassDB(sys.argv[1])
board = db.open_board("From another process", "mnist", {"subset_train": 500}, 3, 500)
db.add_board_run(board.id, "bo", "t1", {"model": "mlp"}, 0.7, 0.6, 2.0, 3)
db.submit("t1", "bo", "Bo")
collection = db.open_collection("Digits", [str(d) for d in range(10)])
db.add_drawing(collection.id, "7", "bo", b"seven")
"""

READER = """
import json, sys
from vision_lab.serving.class_db import ClassDB
db = ClassDB(sys.argv[1])
board = db.current_board()
collection = db.current_collection()
print(json.dumps({"nicknames": [e.nickname for e in db.entries(board.id)],
                  "drawings": [db.drawing_path(d).read_text() for d in db.drawings(collection.id)]}))
"""


def test_a_fresh_process_reads_what_another_wrote(tmp_path):
    run_python(WRITER, str(tmp_path))
    db = ClassDB(tmp_path)
    board, collection = db.current_board(), db.current_collection()
    assert board.name == "From another process" and board.data == {"subset_train": 500}
    assert [(e.nickname, e.val_acc) for e in db.entries(board.id)] == [("Bo", 0.7)]
    [seven] = db.drawings(collection.id)
    assert db.drawing_path(seven).read_bytes() == b"seven" and seven.label == "7"
    # And the other way round: what this process adds, a new one reads.
    an_entry(db, board.id, "cy")
    db.add_drawing(collection.id, "1", "cy", b"one")
    read = run_python(READER, str(tmp_path)).stdout
    assert read.strip() == '{"nicknames": ["Bo", "student cy"], "drawings": ["seven", "one"]}'


# ---- kill -9 -------------------------------------------------------------------------------------

# Adds drawings and board entries as fast as it can, printing each id once the call has returned:
# a printed id is one the store acknowledged.
SUBMITTER = """
import sys
from vision_lab.serving.class_db import ClassDB
db = ClassDB(sys.argv[1])
name = sys.argv[2]
board = db.current_board() or db.open_board("Contest", "shapes", {"subset_train": 1000}, 2, 1000)
collection = (db.current_collection()
              or db.open_collection("Digits", [str(d) for d in range(10)], total=100000))
print("ready", flush=True)
i = 0
while True:
    visitor = f"{name}-{i}"      # one visitor per step: the pace limit is not what is tested
    drawing = db.add_drawing(collection.id, str(i % 10), visitor, f"drawing of {visitor}".encode())
    print("drawing", drawing.id, visitor, flush=True)
    db.add_board_run(board.id, visitor, visitor, {"step": i}, 0.5, 0.4, 1.0, 2)
    entry = db.submit(visitor, visitor, f"nick {i}")
    print("entry", entry.id, visitor, flush=True)
    i += 1
"""


def kill_mid_stream(folder, name: str, after: float) -> list[list[str]]:
    """Run SUBMITTER, SIGKILL it `after` seconds into its writes; the lines it acknowledged."""
    proc = subprocess.Popen([sys.executable, "-c", SUBMITTER, str(folder), name], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 30
    while not lines and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert lines[:1] == ["ready\n"], proc.stderr.read() if proc.poll() is not None else "no start"
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL, proc.stderr.read()
    reader.join(timeout=10)
    proc.stderr.close()
    # A line cut short by the kill was never acknowledged in full: only whole lines count.
    return [line.split() for line in lines[1:] if line.endswith("\n")]


def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path):
    rng = random.Random()   # random moments: each run of the test kills at other points
    acknowledged = {"drawing": {}, "entry": {}}
    for round_ in range(4):
        acks = kill_mid_stream(tmp_path, f"r{round_}", after=rng.uniform(0.05, 0.6))
        assert len(acks) >= 2, "the writer was killed before it acknowledged anything"
        for kind, ident, visitor in acks:
            acknowledged[kind][int(ident)] = visitor

        db = ClassDB(tmp_path)   # what the app does when it starts again
        board, collection = db.current_board(), db.current_collection()
        drawings = {d.id: d for d in db.drawings(collection.id)}
        entries = {e.id: e for e in db.entries(board.id)}
        for ident, visitor in acknowledged["drawing"].items():
            assert drawings[ident].visitor == visitor
            assert db.drawing_path(drawings[ident]).read_bytes() == f"drawing of {visitor}".encode()
        for ident, visitor in acknowledged["entry"].items():
            assert (entries[ident].visitor, entries[ident].run_token) == (visitor, visitor)
        # Every row names its file, and every file has its row (a file written just before the
        # kill, whose row never committed, is gone).
        assert files_on_disk(tmp_path) == sorted(d.file for d in drawings.values())
        db.close()
    assert len(acknowledged["drawing"]) >= 8 and len(acknowledged["entry"]) >= 4


# ---- one writer ----------------------------------------------------------------------------------

def test_writers_at_the_same_moment_cannot_pass_the_caps(tmp_path):
    # Two ClassDB objects on one folder: one process's lock does not cover the other's, so only the
    # database's own write lock (BEGIN IMMEDIATE) keeps the caps, as between two processes.
    stores = [ClassDB(tmp_path), ClassDB(tmp_path)]
    collection = stores[0].open_collection("Digits", DIGITS, per_student=3, total=10)
    visitors = ["ana", "bo", "cy", "dee"]            # 4 × 3 allowed would be 12: the total binds
    start = threading.Barrier(len(visitors) * 2)
    accepted, refused = [], []

    def student(visitor, store):
        start.wait()
        for i in range(6):
            try:
                accepted.append(store.add_drawing(collection.id, DIGITS[i], visitor, b"x").id)
            except ClassError as refusal:
                refused.append(str(refusal))

    threads = [threading.Thread(target=student, args=(v, stores[k]))
               for v in visitors for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == len(set(accepted)) == 10
    kept = stores[0].drawings(collection.id)
    assert sorted(d.id for d in kept) == sorted(accepted)
    assert max(sum(d.visitor == v for d in kept) for v in visitors) <= 3
    assert stores[1].counts(collection.id).total == 10
    assert set(refused) <= {"The collection is full: it holds at most 10 drawings.",
                            "You have added your 3 drawings: that is each student's share."}
    assert len(refused) == 8 * 6 - 10


def test_one_run_submitted_twice_at_once_is_one_entry(tmp_path):
    stores = [ClassDB(tmp_path), ClassDB(tmp_path)]
    board = a_board(stores[0])
    stores[0].add_board_run(board.id, "ana", "tok", {}, 0.9, 0.8, 1.0, 2)
    start, results = threading.Barrier(4), []

    def press(store):
        start.wait()
        try:
            results.append(store.submit("tok", "ana", "Ana").id)
        except ClassError as refusal:
            results.append(str(refusal))

    threads = [threading.Thread(target=press, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == sorted([1] + ["This run is already on the board."] * 3, key=str)
    assert len(stores[0].entries(board.id)) == 1


# ---- files and rows ------------------------------------------------------------------------------

def test_a_drawing_file_never_outlives_its_row_at_open(tmp_path):
    db = ClassDB(tmp_path)
    collection = db.open_collection("Digits", DIGITS)
    kept = db.add_drawing(collection.id, "3", "ana", b"three")
    db.close()
    # What a crash leaves: a file whose row never committed, and a file cut off mid-write.
    folder = tmp_path / "drawings" / str(collection.id)
    (folder / "999.png").write_bytes(b"orphan")
    (folder / "998.tmp").write_bytes(b"half")
    again = ClassDB(tmp_path)
    assert files_on_disk(tmp_path) == [kept.file]
    assert again.drawing_path(again.drawing(kept.id)).read_bytes() == b"three"


def test_a_deleted_drawing_takes_no_later_drawing_with_it(tmp_path, monkeypatch):
    """Deleting the newest drawing frees its number; a drawing added before the old file is
    unlinked must keep its own file (the unlink runs after the delete commits)."""
    db = ClassDB(tmp_path)
    collection = db.open_collection("Digits", DIGITS)
    db.add_drawing(collection.id, "1", "ana", b"one")
    newest = db.add_drawing(collection.id, "2", "ana", b"two")
    unlink, added = class_db_module.Path.unlink, []

    def another_student_adds_first(path, *args, **kwargs):
        if not added:   # the moment between the delete's commit and its unlink
            added.append(db.add_drawing(collection.id, "5", "bo", b"five"))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(class_db_module.Path, "unlink", another_student_adds_first)
    assert db.delete_drawing(newest.id)
    monkeypatch.undo()
    [five] = added
    assert db.drawing_path(db.drawing(five.id)).read_bytes() == b"five"
    assert five.id != newest.id


def test_opening_the_database_meanwhile_keeps_a_drawing_being_written(tmp_path, monkeypatch):
    """Another process opening the database (the CLI's export while the app serves) removes the
    files no row names; a drawing whose file is written but whose row is not yet committed must
    survive it."""
    app, other = ClassDB(tmp_path), ClassDB(tmp_path)
    collection = app.open_collection("Digits", DIGITS)
    write, sweeps = class_db_module._write_synced, []

    def the_other_opens_meanwhile(path, data):
        write(path, data)
        sweep = threading.Thread(target=other._remove_orphan_files)   # what ClassDB() runs
        sweep.start()
        sweep.join(timeout=1.0)   # a sweep that does not wait for this write has run by now
        sweeps.append(sweep)

    monkeypatch.setattr(class_db_module, "_write_synced", the_other_opens_meanwhile)
    drawing = app.add_drawing(collection.id, "4", "ana", b"four")
    sweeps[0].join(timeout=30)
    assert app.drawing_path(drawing).read_bytes() == b"four"


# ---- refusals ------------------------------------------------------------------------------------

def test_a_database_from_a_newer_vision_lab_is_refused_and_left_alone(tmp_path):
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ClassError) as refused:
        ClassDB(tmp_path)
    assert str(refused.value) == (
        f"The class database {tmp_path / DB_NAME} was written by a newer Vision Lab "
        f"(schema {SCHEMA_VERSION + 1}; this one knows {SCHEMA_VERSION}): update Vision Lab.")
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert raw.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0


@pytest.mark.parametrize("value, sentence", [
    ("", "Your nickname is empty: type a few characters."),
    (" \t ", "Your nickname is empty: type a few characters."),
    ("tab\there", "Your nickname may not contain '\\t': use letters, digits and spaces."),
    ("x" * (MAX_NAME + 1), f"Your nickname is too long: at most {MAX_NAME} characters."),
    ("<img src=x onerror=alert(1)>", "Your nickname may not contain '<': use letters, digits and spaces."),
    ("`code`", "Your nickname may not contain '`': use letters, digits and spaces."),
    ("a\\b", "Your nickname may not contain '\\\\': use letters, digits and spaces."),
    ("two\nlines", "Your nickname may not contain '\\n': use letters, digits and spaces."),
    ("nul\x00", "Your nickname may not contain '\\x00': use letters, digits and spaces."),
    ("evil\u202egnp.exe", "Your nickname may not contain '\\u202e': use letters, digits and spaces."),
    ("zero\u200bwidth", "Your nickname may not contain '\\u200b': use letters, digits and spaces."),
])
def test_a_nickname_that_is_not_plain_text_is_refused_with_what_is_wrong(value, sentence):
    with pytest.raises(ClassError) as refused:
        plain_name(value, "nickname")
    assert str(refused.value) == sentence


def test_plain_names_are_kept_as_typed():
    assert plain_name("  李雷 & Anna-Lena O'Neil  ", "nickname") == "李雷 & Anna-Lena O'Neil"
    assert plain_name("x" * MAX_NAME, "nickname") == "x" * MAX_NAME
    # One letter written as two code points counts as one.
    assert plain_name("e\u0301" * MAX_NAME, "class_name") == "\u00e9" * MAX_NAME


def test_the_store_checks_every_name_before_writing(tmp_path):
    db = ClassDB(tmp_path)
    with pytest.raises(ClassError, match="^The board's name is too long"):
        db.open_board("b" * 41, "shapes", SPLIT, 2, 1000)
    with pytest.raises(ClassError, match="^A class name may not contain '<'"):
        db.open_collection("Digits", ["cat", "<b>dog</b>"])
    board = a_board(db)
    db.add_board_run(board.id, "ana", "tok", {}, 0.9, 0.8, 1.0, 2)
    with pytest.raises(ClassError, match="^Your nickname may not contain"):
        db.submit("tok", "ana", "**bold**\n# heading")
    assert db.entries(board.id) == [] and len(db.boards()) == 1 and db.collections() == []
    # Someone else's run cannot be submitted under their own name.
    with pytest.raises(ClassError, match="^There is no run of yours for this board"):
        db.submit("tok", "bo", "Bo")


def test_flooding_is_refused_per_visitor_and_a_restart_does_not_reset_it(tmp_path, monkeypatch):
    db = ClassDB(tmp_path)
    collection = db.open_collection("Digits", DIGITS)
    limit = PER_MINUTE["drawing"]
    for i in range(limit):
        db.add_drawing(collection.id, DIGITS[i % 10], "flooder", b"x")
    refusal = f"Too many in a row: at most {limit} a minute. Wait a moment and try again."
    with pytest.raises(ClassError) as refused:
        db.add_drawing(collection.id, "1", "flooder", b"x")
    assert str(refused.value) == refusal
    db.add_drawing(collection.id, "1", "calm student", b"x")   # others are not held up
    db.close()
    again = ClassDB(tmp_path)
    with pytest.raises(ClassError, match="^Too many in a row"):
        again.add_drawing(collection.id, "1", "flooder", b"x")
    assert again.counts(collection.id, "flooder").mine == limit
    board = a_board(again)
    for i in range(PER_MINUTE["entry"]):
        an_entry(again, board.id, "eager", n=i)
    with pytest.raises(ClassError, match=f"^Too many in a row: at most {PER_MINUTE['entry']} a minute"):
        an_entry(again, board.id, "eager", n=99)
    # A minute later the visitor may go on.
    now = time.time()
    monkeypatch.setattr(class_db_module.time, "time", lambda: now + 61)
    again.add_drawing(collection.id, "1", "flooder", b"x")
    an_entry(again, board.id, "eager", n=100)


@pytest.mark.parametrize("path, served", [
    ("/gradio_api/file=/srv/runs/.class/class.db", False),
    ("/gradio_api/file=/srv/runs/.class/class.db-wal", False),
    ("/gradio_api/file=/srv/runs/.class/drawings/1/1.png", False),
    ("/gradio_api/file=.class/drawings/1/1.png", False),
    ("/gradio_api/file=/srv/runs/.CLASS/class.db", False),
    ("/gradio_api/file=/srv/runs/%252Eclass/class.db", False),
    ("/gradio_api/file=C:\\runs\\.class\\class.db", False),
    ("/gradio_api/file=/srv/runs/shared/class.db", True),
    ("/gradio_api/file=/srv/runs/my.class/run.safetensors", True),
])
def test_no_url_through_the_class_folder_is_served(path, served):
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient

    from vision_lab.ui.storage import HidePrivateRuns

    client = TestClient(HidePrivateRuns(PlainTextResponse("the file")))
    response = client.get(path)
    assert (response.status_code, response.text) == ((200, "the file") if served else (404, "Not found"))
