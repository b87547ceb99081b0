"""The class dataset through gradio_client, on a real server: the lecturer (with the key) opens a
collection, two students add drawings, caps and flooding are refused with a sentence, bad images
are refused clearly while the app keeps serving, the lecturer deletes, downloads the class-folder
zip, trains on the drawings and compares the shipped MNIST model with the class model."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from class_sketches import sketch_png
from conftest import LECTURER_KEY, ROOT, api_client

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

PER_CLASS = 6   # drawings of each class, from each student


@pytest.fixture(autouse=True)
def _direct_to_the_app(monkeypatch):
    """gradio_client talks to 127.0.0.1 only; with conftest's dead proxy in the environment httpx
    builds proxy transports for each of the several clients one call makes: 0.5-0.7 s a call
    instead of 0.1-0.2 s (measured here), and this file makes about 100 calls. Names other than
    local ones still do not resolve (conftest._offline)."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _png(tmp_path, label, variant) -> str:
    path = tmp_path / f"{label}-{variant}.png"
    path.write_bytes(sketch_png(label, variant))
    return str(path)


def _add(client, tmp_path, label, variant):
    return client.predict(label, None, handle_file(_png(tmp_path, label, variant)),
                          api_name="/class_add")


def _refused(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


def _counts(client) -> tuple[str, dict, str]:
    line, table, mine, _ = client.predict(api_name="/class_counts")
    return line, {row[0]: int(row[1]) for row in table["data"]}, mine


def test_only_the_lecturer_key_opens_closes_deletes_trains(app_url):
    student = api_client(app_url)
    for key in ("", "not-the-key", LECTURER_KEY + " "):
        assert "not the lecturer key" in _refused(lambda: student.predict(
            key, "ours", "0, 1", 10, 100, api_name="/class_open"))
    for api, args in (("/class_close", ()), ("/class_delete", ("1",)), ("/class_zip", ()),
                      ("/class_recent", ()), ("/class_train", ("cnn", 2)),
                      ("/class_compare", ("x",))):
        assert "not the lecturer key" in _refused(lambda: student.predict("nope", *args, api_name=api))


def test_a_class_draws_trains_and_compares(app_url, tmp_path):
    lecturer, anna, ben = (api_client(app_url) for _ in range(3))
    opened = lecturer.predict(LECTURER_KEY, "Ours <b>0/1</b>".replace("<b>", "").replace("</b>", ""),
                              "0，1", PER_CLASS * 2, 100, api_name="/class_open")
    assert opened.startswith("Class dataset “Ours 0/1” is open: 2 classes, at most 12")
    line, counts, mine = _counts(anna)
    assert counts == {"0": 0, "1": 0} and mine == "You added 0 of your 12 drawings."
    for student in (anna, ben):
        for i in range(PER_CLASS):
            for label in ("0", "1"):
                said = _add(student, tmp_path, label, i + (100 if student is ben else 0))[0]
                assert said.startswith("Drawing no.") and f"“{label}”" in said
    line, counts, mine = _counts(ben)
    assert counts == {"0": 12, "1": 12} and line == "Ours 0/1: 24 of at most 100 drawings"
    assert mine == "You added 12 of your 12 drawings."
    # Each student's share is a cap, said as a sentence.
    assert "You have added your 12 drawings" in _refused(lambda: _add(anna, tmp_path, "0", 50))

    gallery, table = lecturer.predict(LECTURER_KEY, api_name="/class_recent")
    assert len(gallery) == len(table["data"]) == 24
    assert {row[2] for row in table["data"]} == {1, 2}   # two students, as short tags
    newest = table["data"][0][0]
    said, gallery, table = lecturer.predict(LECTURER_KEY, f"{newest}, 99999", api_name="/class_delete")
    assert said == "1 drawing(s) deleted. No drawing has the number 99999." and len(gallery) == 23
    assert _counts(anna)[1] == {"0": 12, "1": 11}

    archive = lecturer.predict(LECTURER_KEY, api_name="/class_zip")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    assert Path(archive).name == "Ours 0_1.zip"
    assert sorted(n for n in names if n.endswith("/")) == ["Ours 0_1/0/", "Ours 0_1/1/"]
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) == 23 and f"Ours 0_1/1/{newest}.png" not in pngs

    about, status, loss, acc, class_model = lecturer.predict(LECTURER_KEY, "cnn", 6,
                                                             api_name="/class_train")
    # 12 and 11 drawings: a quarter of each held out (3 + 3), never trained on.
    assert about.startswith("Trains on 17 drawings of 2 classes; 6 drawings are held out"), about
    assert "Finished 6 epoch" in status and class_model and Path(loss).is_file()
    *_, per_class, wrong, summary = lecturer.predict(LECTURER_KEY, class_model,
                                                     api_name="/class_compare")
    assert summary["held_out"] == summary["mnist_measured"] == 6
    assert 0 <= summary["mnist_acc"] <= 1 and 0 <= summary["class_acc"] <= 1
    assert summary["mnist_model"] == "mnist_cnn" and summary["class_model"] == class_model
    assert [row[0] for row in per_class["data"]] == ["0", "1"]
    assert len(wrong) == round((1 - summary["mnist_acc"]) * 6) + round((1 - summary["class_acc"]) * 6)

    closed = lecturer.predict(LECTURER_KEY, api_name="/class_close")
    assert closed.startswith("Class dataset “Ours 0/1” is closed with 23 drawings")
    assert "No class collection is open" in _refused(lambda: _add(anna, tmp_path, "1", 60))


def test_bad_drawings_are_refused_and_the_app_keeps_serving(app_url, tmp_path):
    lecturer, student = api_client(app_url), api_client(app_url)
    lecturer.predict(LECTURER_KEY, "flood", "0, 1", 100, 100, api_name="/class_open")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not a picture at all")
    assert "not an image" in _refused(lambda: student.predict(
        "0", None, handle_file(str(text_file)), api_name="/class_add"))
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    assert "empty" in _refused(lambda: student.predict("0", None, handle_file(str(blank)),
                                                       api_name="/class_add"))
    assert "is not one of this collection's classes" in _refused(lambda: _add(student, tmp_path, "7", 1))
    assert "Pick the class" in _refused(lambda: _add(student, tmp_path, None, 1))
    # A visitor adding faster than a person draws is refused with a sentence (40 a minute).
    for i in range(40):
        _add(student, tmp_path, str(i % 2), i)
    assert "Too many in a row" in _refused(lambda: _add(student, tmp_path, "0", 41))
    assert _counts(student)[1] == {"0": 20, "1": 20}
    # Drawn on the sketchpad (an image editor value), as a browser sends it.
    page = handle_file(_png(tmp_path, "1", 7))
    said = api_client(app_url).predict("1", {"background": page, "layers": [], "composite": page},
                                       None, api_name="/class_add")[0]
    assert said.startswith("Drawing no.")
