"""The class board through gradio_client against the shared server: the lecturer opens it with the
key, three students train tiny runs for it and submit, the board ranks by validation accuracy, no
endpoint shows a test figure before Reveal, Reveal shows them and the moves, the lecturer deletes
an entry and closes the board. Hostile nicknames and flooding are refused with a sentence, and the
server keeps serving."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import LECTURER_KEY, api_client

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")

# A tiny MLP on 200 shapes: each run takes a couple of seconds.
BOARD = dict(name="Lesson 3", dataset="shapes", train_images=200, test_images=100, val_fraction=0.2,
             max_epochs=2, max_seconds=0)
RUN = dict(model="mlp", epochs=1, optimizer="adam", lr=0.001, batch_size=32, augment="none",
           dropout=0.0, weight_decay=0.0, seed=0)
STUDENTS = {"Ada": dict(lr=0.003, seed=1), "李雷": dict(lr=0.0003, seed=2), "Bo": dict(optimizer="sgd", lr=0.05, seed=3)}


@pytest.fixture(scope="module")
def lecturer(app_url):
    return api_client(app_url)


@pytest.fixture(scope="module")
def students(app_url):
    return {name: api_client(app_url) for name in STUDENTS}


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    return str(info.value)


def rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def said(outputs) -> str:
    """Everything an endpoint returned, as text (files by their contents)."""
    parts = []
    for value in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        if isinstance(value, str) and Path(value).suffix == ".csv" and Path(value).is_file():
            parts.append(Path(value).read_text(encoding="utf-8"))
        else:
            parts.append(json.dumps(value, ensure_ascii=False))
    return "\n".join(parts)


def assert_no_test_figures(text: str) -> None:
    lowered = text.lower()
    assert "test_acc" not in lowered and "test accuracy" not in lowered.replace(
        "test accuracies stay hidden", "").replace("its test accuracy stays hidden", ""), text[:2000]


def test_only_the_lecturer_opens_a_board(lecturer):
    for key in ("", "not-the-key"):
        assert "That is not the lecturer key." in refused(
            lecturer.predict, key, *BOARD.values(), api_name="/board_open")
    message, rules, table, plot = lecturer.predict(LECTURER_KEY, *BOARD.values(), api_name="/board_open")
    assert message.startswith("Board ") and "is open" in message
    assert "Lesson 3" in rules and "200 training images" in rules and "at most 2 epoch" in rules
    assert table["data"] == [] and len(table["headers"]) == 6
    assert "No class board is open." not in rules


def test_three_students_train_and_submit_ranked_by_validation(lecturer, students):
    outputs = {}
    for name, client in students.items():
        assert "no run of yours" in refused(client.predict, name, api_name="/board_submit")
        job = client.submit(**{**RUN, **STUDENTS[name]}, api_name="/board_train")
        job.result(timeout=120)
        every = job.outputs()
        status, loss, acc, summary = every[-1]
        assert "Trained for the board" in status and summary["val_acc"] is not None, status
        assert Path(acc).is_file() and Path(loss).is_file()
        assert_no_test_figures(said(every))
        outputs[name] = summary
        message, *view = client.predict(name, api_name="/board_submit")
        assert message.startswith("Entry ") and "on the board" in message
        assert_no_test_figures(said(view))
    rules, table, plot = lecturer.predict(api_name="/board_view")
    ranked = rows(table)
    assert [r["Nickname"] for r in ranked] == sorted(
        STUDENTS, key=lambda n: (-outputs[n]["val_acc"], outputs[n]["seconds"]))
    values = [float(r["Validation accuracy"].rstrip("%")) for r in ranked]
    assert values == sorted(values, reverse=True) and [r["Rank"] for r in ranked] == ["1", "2", "3"]
    assert len(table["headers"]) == 6 and Path(plot).is_file()
    assert "mlp" in ranked[0]["Settings"]
    assert_no_test_figures(said([rules, table]))
    csv_before = lecturer.predict(LECTURER_KEY, api_name="/board_csv")
    header = Path(csv_before).read_text(encoding="utf-8").splitlines()[0]
    assert "val_acc" in header and "test_acc" not in header


def test_a_run_over_the_board_rules_is_refused(students):
    client = next(iter(students.values()))
    assert "at most 2 epoch(s): you asked for 3" in refused(
        client.predict, **{**RUN, "epochs": 3}, api_name="/board_train")


@pytest.mark.parametrize("nickname, sentence", [
    ("<img src=x onerror=alert(1)>", "may not contain '<'"),
    ("x" * 500, "too long: at most 40 characters"),
    ("two\nlines", "may not contain '\\n'"),
    ("abc\u202edef", "may not contain '\\u202e'"),
    ("   ", "Your nickname is empty"),
])
def test_hostile_nicknames_are_refused(lecturer, students, nickname, sentence):
    client = next(iter(students.values()))
    assert sentence in refused(client.predict, nickname, api_name="/board_submit")
    rules, table, plot = lecturer.predict(api_name="/board_view")   # still serving
    assert len(table["data"]) == 3


def test_flooding_is_refused(app_url, lecturer):
    """The same settings again are replayed from the run cache at once: a student could put a run
    on the board every second. The seventh entry in a minute is refused."""
    flooder = api_client(app_url)
    run = {**RUN, "seed": 99}
    for n in range(6):
        flooder.predict(**run, api_name="/board_train")
        flooder.predict(f"flood {n}", api_name="/board_submit")
    flooder.predict(**run, api_name="/board_train")
    assert "at most 6 a minute" in refused(flooder.predict, "flood 7", api_name="/board_submit")
    rules, table, plot = lecturer.predict(api_name="/board_view")
    for entry in rows(table):
        if entry["Nickname"].startswith("flood"):
            lecturer.predict(LECTURER_KEY, int(entry["Entry"]), api_name="/board_delete")


def test_reveal_shows_test_and_moves_then_delete_and_close(lecturer, students):
    assert "not the lecturer key" in refused(lecturer.predict, "guess", api_name="/board_reveal")
    message, rules, table, plot = lecturer.predict(LECTURER_KEY, api_name="/board_reveal")
    assert "Revealed" in message and "Revealed" in rules
    ranked = rows(table)
    assert len(ranked) == 3 and table["headers"] == [
        "Test rank", "Entry", "Nickname", "Test accuracy", "Move", "Validation accuracy",
        "Validation rank", "Seconds", "Settings"]
    tests = [float(r["Test accuracy"].rstrip("%")) for r in ranked]
    assert tests == sorted(tests, reverse=True) and [r["Test rank"] for r in ranked] == ["1", "2", "3"]
    assert sorted(r["Validation rank"] for r in ranked) == ["1", "2", "3"]
    for r in ranked:
        move = int(r["Validation rank"]) - int(r["Test rank"])
        assert r["Move"] == ("=" if move == 0 else f"↑{move}" if move > 0 else f"↓{-move}")
    client = next(iter(students.values()))
    assert "has been revealed" in refused(client.predict, **RUN, api_name="/board_train")
    exported = Path(lecturer.predict(LECTURER_KEY, api_name="/board_csv"))
    lines = list(csv.DictReader(exported.open(encoding="utf-8")))
    assert [line["nickname"] for line in lines] == [r["Nickname"] for r in ranked]
    assert all(line["test_acc"] and line["move"] for line in lines)

    assert "no entry 999" in refused(lecturer.predict, LECTURER_KEY, 999, api_name="/board_delete")
    gone = ranked[-1]["Entry"]
    message, rules, table, plot = lecturer.predict(LECTURER_KEY, int(gone), api_name="/board_delete")
    assert f"Entry {gone} is off the board." == message and len(table["data"]) == 2
    assert "not the lecturer key" in refused(lecturer.predict, "", api_name="/board_close")
    message, rules, table, plot = lecturer.predict(LECTURER_KEY, api_name="/board_close")
    assert "is closed" in message and rules == "No class board is open." and table["data"] == []
    assert "No class board is open." in refused(client.predict, "again", api_name="/board_submit")
