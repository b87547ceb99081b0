"""What a class made survives its server: a board with its entries (one trained and submitted
through the API, one written by another process meanwhile) and a collection with its drawings are
all there, through the API, after the app is killed with SIGKILL and started again on the same
runs folder; the board still hides its test figures until the Reveal, and takes up where it was."""
import io
import signal
import ssl
import zipfile

import pytest

from conftest import LaunchedApp, api_client
from vision_lab.serving.class_db import FOLDER, ClassDB
from vision_lab.ui.storage import OWNER_COOKIE

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")

KEY = "lecturer-key-for-the-restart"
ANA = "ana-browser-token-0123456789"


def client(app, browser: str | None = None):
    """A visitor; with `browser`, one whose browser keeps its cookie across the restart."""
    headers = {"Cookie": f"{OWNER_COOKIE}={browser}"} if browser else None
    return api_client(app.url, ssl_verify=ssl.create_default_context(), headers=headers)


def a_drawing(tmp_path, name: str, column: int):
    """A dark stroke on white, as a phone's sketch arrives: one vertical bar at `column`."""
    from gradio_client import handle_file
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (120, 120), "white")
    ImageDraw.Draw(img).line([(column, 15), (column + 10, 105)], fill="black", width=12)
    path = tmp_path / f"{name}.png"
    img.save(path)
    return handle_file(str(path))


def board_rows(c) -> tuple[list[str], list[tuple[str, str]]]:
    """The board as a student's client sees it: its columns, and (nickname, validation) a row."""
    _, table, _ = c.predict(api_name="/board_view")
    headers = table["headers"]
    nick, val = headers.index("Nickname"), headers.index("Validation accuracy")
    return headers, sorted((row[nick], row[val]) for row in table["data"])


def counts(c) -> dict[str, int]:
    _, table, _, _ = c.predict(api_name="/class_counts")
    return {name: int(n) for name, n in table["data"]}


def test_a_class_survives_kill_9_of_the_app(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first = LaunchedApp(home, "--lecturer-key", KEY)
    try:
        lecturer, ana = client(first), client(first, ANA)
        lecturer.predict(KEY, "Restart contest", "shapes", 200, 100, 0.2, 2, 0, api_name="/board_open")
        # A student trains for the board and submits (a tiny MLP: a second or two).
        ana.predict("mlp", 1, "adam", 0.01, 32, "none", 0.0, 0.0, 3, api_name="/board_train")
        said = ana.predict("Ana", api_name="/board_submit")[0]
        assert said.startswith("Entry 1 is on the board"), said
        # Another process writes meanwhile (the CLI, a second server on the same folder).
        other = ClassDB(home / "checkpoints" / FOLDER)
        board = other.current_board()
        settings = {"model": "cnn", "optimizer": "sgd", "lr": 0.1, "batch_size": 64, "epochs": 2,
                    "augment": "none", "dropout": 0.0, "weight_decay": 0.0, "seed": 1}
        other.add_board_run(board.id, "someone", "their-run", settings, 0.75, 1.0, 0.01, 2)
        other.submit("their-run", "someone", "李雷")
        other.close()
        lecturer.predict(KEY, "Strokes", "0, 1, 2", 10, 100, api_name="/class_open")
        counts(ana)   # as the page does: the class picker learns the collection's classes
        for name, label, column in (("a", "1", 30), ("b", "1", 60), ("c", "2", 90)):
            ana.predict(label, None, a_drawing(tmp_path, name, column), api_name="/class_add")
        headers, before = board_rows(ana)
        drawn = counts(ana)
    finally:
        first.close(signal.SIGKILL)   # the app and every process it started, as a crash leaves them
        assert first.proc.returncode == -signal.SIGKILL
    assert len(before) == 2 and "Test accuracy" not in headers
    assert drawn == {"0": 0, "1": 2, "2": 1}

    second = LaunchedApp(home, "--lecturer-key", KEY)
    try:
        lecturer, ana, bo = client(second), client(second, ANA), client(second)
        # Everything acknowledged before the kill, read through the API of the new server.
        assert board_rows(bo) == (headers, before)
        assert counts(bo) == drawn
        # The run Ana trained is still hers and still on the board: a second submit is refused.
        with pytest.raises(Exception, match="already on the board"):
            ana.predict("Ana again", api_name="/board_submit")
        # The collection goes on where it was, and its zip holds every drawing.
        counts(bo)
        bo.predict("0", None, a_drawing(tmp_path, "d", 45), api_name="/class_add")
        assert counts(bo) == {**drawn, "0": 1}
        with zipfile.ZipFile(lecturer.predict(KEY, api_name="/class_zip")) as archive:
            pngs = sorted(n for n in archive.namelist() if n.endswith(".png"))
        assert [n.split("/")[1] for n in pngs] == ["0", "1", "1", "2"]
        # The Reveal works on the board as it was: the test figures appear, the board re-ranks.
        lecturer.predict(KEY, api_name="/board_reveal")
        _, table, _ = bo.predict(api_name="/board_view")
        assert "Test accuracy" in table["headers"]
        test = table["headers"].index("Test accuracy")
        nick = table["headers"].index("Nickname")
        assert (table["data"][0][nick], table["data"][0][test]) == ("李雷", "100.0%")
    finally:
        second.close()
