"""`python -m vision_lab class list | export`: what a class made in the app, from the class
database under a runs folder: each board as CSV (test figures only once revealed), each
collection as a zip of class folders holding the very drawings kept."""
import csv
import io
import json
import subprocess
import sys
import zipfile

from conftest import ROOT
from vision_lab.serving.class_db import FOLDER, ClassDB


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vision_lab", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def png(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (28, 28), shade).save(out, format="PNG")
    return out.getvalue()


def seeded(runs):
    """A runs folder as the app leaves it: a revealed board, an open one, a collection."""
    db = ClassDB(runs / FOLDER)
    first = db.open_board("Shapes contest", "shapes", {"subset_train": 500, "subset_test": 100,
                                                       "val_fraction": 0.2, "data_seed": 7}, 2, 500)
    for visitor, val, test in (("ana", 0.90, 0.70), ("bo", 0.80, 0.85), ("cy", 0.85, 0.80)):
        db.add_board_run(first.id, visitor, f"t-{visitor}", {"model": "cnn", "lr": 0.01}, val, test, 1.5, 2)
        db.submit(f"t-{visitor}", visitor, f"=nick {visitor}")
    db.reveal(first.id)
    second = db.open_board("MNIST contest", "mnist", {"subset_train": 1000, "subset_test": 200,
                                                      "val_fraction": 0.1, "data_seed": 3}, 3, 1000)
    db.add_board_run(second.id, "ana", "t-2", {"model": "mlp"}, 0.6, 0.55, 3.0, 3)
    db.submit("t-2", "ana", "李雷")
    collection = db.open_collection("手写数字", ["0", "1", "二"], per_student=10, total=100)
    drawings = [db.add_drawing(collection.id, label, visitor, png(shade))
                for label, visitor, shade in (("0", "ana", 10), ("1", "ana", 20), ("1", "bo", 30))]
    db.close()
    return drawings


def test_export_writes_each_board_as_csv_and_each_collection_as_a_class_folder_zip(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    drawings = seeded(runs)
    r = cli("class", "export", "--runs-dir", runs, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    # Opening the second board closed the first, after its Reveal.
    assert [(row.get("board"), row.get("collection"), row["state"], row.get("revealed")) for row in rows] == [
        (1, None, "closed", True), (2, None, "open", False), (None, 1, "open", None)]
    assert [row.get("entries", row.get("drawings")) for row in rows] == [3, 1, 3]

    revealed = list(csv.DictReader(open(rows[0]["csv"], encoding="utf-8")))
    # Ranked by test accuracy once revealed, each with its move from its validation place.
    assert [(r["nickname"], r["val_acc"], r["test_acc"], r["rank"], r["move"]) for r in revealed] == [
        ("'=nick bo", "0.8000", "0.8500", "3", "2"), ("'=nick cy", "0.8500", "0.8000", "2", "0"),
        ("'=nick ana", "0.9000", "0.7000", "1", "-2")]
    hidden = list(csv.DictReader(open(rows[1]["csv"], encoding="utf-8")))
    assert [r["nickname"] for r in hidden] == ["李雷"] and "test_acc" not in hidden[0]

    with zipfile.ZipFile(rows[2]["zip"]) as archive:
        names = archive.namelist()
        assert {"手写数字/0/", "手写数字/1/", "手写数字/二/"} <= set(names)   # an empty class too
        kept = {n: archive.read(n) for n in names if n.endswith(".png")}
    db = ClassDB(runs / FOLDER)
    assert kept == {f"手写数字/{d.label}/{d.id}.png": db.drawing_path(d).read_bytes() for d in drawings}


def test_list_says_what_there_is_without_writing_anything(tmp_path):
    runs = tmp_path / "runs"
    seeded(runs)
    before = sorted(p.name for p in (runs / FOLDER).iterdir())
    r = cli("class", "list", "--runs-dir", runs)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        'board 1 "Shapes contest" (closed, revealed, 3 entries)',
        'board 2 "MNIST contest" (open, 1 entry)',
        'collection 1 "手写数字" (open, 3 drawings in 3 classes)']
    assert sorted(p.name for p in (runs / FOLDER).iterdir()) == before


def test_a_folder_without_a_class_database_is_one_sentence_and_stays_empty(tmp_path):
    r = cli("class", "export", "--runs-dir", tmp_path / "typo", "--out", tmp_path / "out")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: there is no class database in {tmp_path / 'typo' / FOLDER}: the app "
                                "makes one there when a lecturer opens a class board or collection "
                                "(--runs-dir is the app's --checkpoints)")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()


def test_a_damaged_class_database_is_one_sentence(tmp_path):
    (tmp_path / FOLDER).mkdir()
    (tmp_path / FOLDER / "class.db").write_bytes(b"not a database at all" * 100)
    r = cli("class", "list", "--runs-dir", tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"error: The class database {tmp_path / FOLDER / 'class.db'} cannot be read (")
