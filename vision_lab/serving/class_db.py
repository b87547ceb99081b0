"""What a class makes together, kept like data: class boards with their entries, and class
collections with their drawings.

One SQLite database (the standard library's sqlite3) at `<runs folder>/.class/class.db`, the
drawings as PNG files beside it (`<runs folder>/.class/drawings/<collection>/<drawing>.png`). Not
a cache: nothing here is evicted or swept by the storage janitor, and it survives a restart.

- WAL mode with synchronous=FULL: once a call that writes has returned, its row is in the
  write-ahead log on disk, so a process killed at any moment (kill -9) loses nothing it
  acknowledged; readers never wait for the writer.
- One writer: every write holds this process's lock and a `BEGIN IMMEDIATE` transaction, and the
  checks that guard it (caps, a board's state, a visitor's pace) run inside it, so two students
  adding the last allowed drawing at the same moment cannot both get in.
- A drawing's file is written and fsynced before its row commits: a row never names a missing
  file. A crash between the two leaves a file with no row, removed the next time the database
  opens. A drawing's number is never given again (AUTOINCREMENT), so neither is its file's name:
  a deleted drawing's file, unlinked after its row is gone, is never a later drawing's.
- The schema's version is stored (PRAGMA user_version); a database from a newer Vision Lab is
  refused with a sentence rather than misread.

Everything a person typed (nicknames, class names, board names) is stored as given, after the
checks in `plain_name`: the UI shows it as plain text, never as Markdown or HTML.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ..i18n import text

SCHEMA_VERSION = 1
FOLDER = ".class"           # under the runs folder; never served by path (ui.storage.HIDDEN)
DB_NAME = "class.db"
# A visitor's pace, counted from the rows themselves (so a restart does not reset it): more than
# this many writes of one kind in the last minute is flooding, refused with a sentence.
PER_MINUTE = {"drawing": 40, "entry": 6, "board_run": 20}
MAX_NAME = 40               # characters of a nickname, a class name or a board's name
MAX_CLASSES = 20
DEFAULT_PER_STUDENT = 50    # drawings per student in one collection
DEFAULT_TOTAL = 2000        # drawings in one collection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS boards (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, dataset TEXT NOT NULL, data TEXT NOT NULL,
    max_epochs INTEGER NOT NULL, max_images INTEGER NOT NULL, max_seconds REAL,
    state TEXT NOT NULL DEFAULT 'open', created REAL NOT NULL, revealed REAL, closed REAL);
CREATE TABLE IF NOT EXISTS board_runs (
    token TEXT PRIMARY KEY, board_id INTEGER NOT NULL REFERENCES boards(id) ON DELETE CASCADE,
    visitor TEXT NOT NULL, settings TEXT NOT NULL, val_acc REAL, test_acc REAL,
    seconds REAL NOT NULL, epochs INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    board_id INTEGER NOT NULL REFERENCES boards(id) ON DELETE CASCADE, nickname TEXT NOT NULL, visitor TEXT NOT NULL, run_token TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL, val_acc REAL, test_acc REAL, seconds REAL NOT NULL,
    epochs INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, classes TEXT NOT NULL,
    per_student INTEGER NOT NULL, total INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'open',
    created REAL NOT NULL, closed REAL);
CREATE TABLE IF NOT EXISTS drawings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    label TEXT NOT NULL, visitor TEXT NOT NULL, file TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_board ON entries(board_id);
CREATE INDEX IF NOT EXISTS board_runs_visitor ON board_runs(visitor, created);
CREATE INDEX IF NOT EXISTS drawings_collection ON drawings(collection_id, label);
CREATE INDEX IF NOT EXISTS drawings_visitor ON drawings(visitor, created);
"""


class ClassError(ValueError):
    """Something a person asked for that the class's rules refuse: the message says why."""


@dataclass
class Board:
    id: int
    name: str
    dataset: str
    data: dict          # the fixed split: subset_train, subset_test, val_fraction, data_seed
    max_epochs: int
    max_images: int
    max_seconds: float | None
    state: str          # open | revealed | closed
    created: float
    revealed: float | None = None
    closed: float | None = None


@dataclass
class Entry:
    id: int
    board_id: int
    nickname: str
    visitor: str
    run_token: str
    settings: dict
    val_acc: float | None
    test_acc: float | None   # shown to nobody but the lecturer's export until the board is revealed
    seconds: float
    epochs: int
    created: float


@dataclass
class BoardRun:
    token: str
    board_id: int
    visitor: str
    settings: dict
    val_acc: float | None
    test_acc: float | None
    seconds: float
    epochs: int
    created: float


@dataclass
class Collection:
    id: int
    name: str
    classes: list[str]
    per_student: int
    total: int
    state: str          # open | closed
    created: float
    closed: float | None = None


@dataclass
class Drawing:
    id: int
    collection_id: int
    label: str
    visitor: str
    file: str           # relative to the class folder
    created: float


@dataclass
class Counts:
    by_label: dict[str, int] = field(default_factory=dict)
    total: int = 0
    mine: int = 0


def plain_name(value, what: str) -> str:
    """A nickname, class name or board name as plain text: trimmed, 1 to MAX_NAME characters, no
    control or formatting characters (no newlines, no right-to-left overrides), no markup
    characters. Raises ClassError saying what is wrong."""
    name = unicodedata.normalize("NFC", str(value or "")).strip()
    if not name:
        raise ClassError(text("class.name_empty", what=text(f"class.what.{what}")))
    if len(name) > MAX_NAME:
        raise ClassError(text("class.name_long", what=text(f"class.what.{what}"), limit=MAX_NAME))
    bad = [c for c in name if unicodedata.category(c)[0] == "C" or c in "<>`\\"]
    if bad:
        raise ClassError(text("class.name_chars", what=text(f"class.what.{what}"), char=repr(bad[0])))
    return name


class ClassDB:
    """The class's database in `folder` (created if missing). Thread-safe: each thread reads on
    its own connection; writes go one at a time."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self._write = threading.Lock()
        self._local = threading.local()
        with self._write:
            try:
                db = self._db()
                version = db.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as error:   # not a database, or a damaged one
                self.close()
                raise ClassError(text("class.damaged_db", path=str(self.path), error=str(error))) from None
            if version > SCHEMA_VERSION:
                raise ClassError(text("class.newer_schema", path=str(self.path), version=version,
                                      known=SCHEMA_VERSION))
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        self._remove_orphan_files()

    # -- connections --

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")   # a commit that returned is on disk
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _writing(self):
        with self._write:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @staticmethod
    def _pace(db, table: str, kind: str, visitor: str) -> None:
        since = time.time() - 60
        n = db.execute(f"SELECT COUNT(*) FROM {table} WHERE visitor = ? AND created > ?",
                       (visitor, since)).fetchone()[0]
        if n >= PER_MINUTE[kind]:
            raise ClassError(text("class.too_fast", limit=PER_MINUTE[kind]))

    # -- boards --

    def open_board(self, name: str, dataset: str, data: dict, max_epochs: int, max_images: int,
                   max_seconds: float | None = None) -> Board:
        """A new board, open to entries; the board that was current is closed."""
        name = plain_name(name, "board")
        with self._writing() as db:
            now = time.time()
            db.execute("UPDATE boards SET state = 'closed', closed = ? WHERE state != 'closed'", (now,))
            cur = db.execute(
                "INSERT INTO boards (name, dataset, data, max_epochs, max_images, max_seconds, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, dataset, json.dumps(data), int(max_epochs), int(max_images),
                 None if max_seconds in (None, 0) else float(max_seconds), now))
            board_id = cur.lastrowid
        return self.board(board_id)

    def board(self, board_id: int) -> Board | None:
        row = self._db().execute("SELECT * FROM boards WHERE id = ?", (board_id,)).fetchone()
        return _board(row) if row else None

    def current_board(self) -> Board | None:
        """The board students see: the newest one not closed."""
        row = self._db().execute(
            "SELECT * FROM boards WHERE state != 'closed' ORDER BY id DESC LIMIT 1").fetchone()
        return _board(row) if row else None

    def boards(self) -> list[Board]:
        return [_board(r) for r in self._db().execute("SELECT * FROM boards ORDER BY id")]

    def add_board_run(self, board_id: int, visitor: str, token: str, settings: dict,
                      val_acc: float | None, test_acc: float | None, seconds: float,
                      epochs: int) -> BoardRun:
        """A run trained for the board, kept until its student submits it (or never)."""
        with self._writing() as db:
            self._open_board(db, board_id)
            self._pace(db, "board_runs", "board_run", visitor)
            db.execute("INSERT INTO board_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (token, board_id, visitor, json.dumps(settings), val_acc, test_acc,
                        float(seconds), int(epochs), time.time()))
        return self.board_run(token)

    def board_run(self, token: str) -> BoardRun | None:
        row = self._db().execute("SELECT * FROM board_runs WHERE token = ?", (token,)).fetchone()
        return BoardRun(**{**dict(row), "settings": json.loads(row["settings"])}) if row else None

    def latest_board_run(self, board_id: int, visitor: str) -> BoardRun | None:
        """The visitor's newest run trained for the board (what "Submit" puts on it)."""
        row = self._db().execute("SELECT token FROM board_runs WHERE board_id = ? AND visitor = ?"
                                 " ORDER BY created DESC, rowid DESC LIMIT 1", (board_id, visitor)).fetchone()
        return self.board_run(row["token"]) if row else None

    def submit(self, token: str, visitor: str, nickname: str) -> Entry:
        """Put a visitor's board run on its board under `nickname`."""
        nickname = plain_name(nickname, "nickname")
        with self._writing() as db:
            run = db.execute("SELECT * FROM board_runs WHERE token = ? AND visitor = ?",
                             (token, visitor)).fetchone()
            if run is None:
                raise ClassError(text("class.board.no_run"))
            self._open_board(db, run["board_id"])
            if db.execute("SELECT 1 FROM entries WHERE run_token = ?", (token,)).fetchone():
                raise ClassError(text("class.board.already_submitted"))
            self._pace(db, "entries", "entry", visitor)
            cur = db.execute(
                "INSERT INTO entries (board_id, nickname, visitor, run_token, settings, val_acc,"
                " test_acc, seconds, epochs, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run["board_id"], nickname, visitor, token, run["settings"], run["val_acc"],
                 run["test_acc"], run["seconds"], run["epochs"], time.time()))
            entry_id = cur.lastrowid
        return self.entry(entry_id)

    def entry(self, entry_id: int) -> Entry | None:
        row = self._db().execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def entries(self, board_id: int) -> list[Entry]:
        """Every entry of a board, oldest first (class_board ranks them)."""
        return [_entry(r) for r in self._db().execute(
            "SELECT * FROM entries WHERE board_id = ? ORDER BY id", (board_id,))]

    def reveal(self, board_id: int) -> Board:
        with self._writing() as db:
            self._open_board(db, board_id)
            db.execute("UPDATE boards SET state = 'revealed', revealed = ? WHERE id = ?",
                       (time.time(), board_id))
        return self.board(board_id)

    def close_board(self, board_id: int) -> Board:
        with self._writing() as db:
            db.execute("UPDATE boards SET state = 'closed', closed = ? WHERE id = ? AND state != 'closed'",
                       (time.time(), board_id))
        return self.board(board_id)

    def delete_entry(self, entry_id: int) -> bool:
        with self._writing() as db:
            return db.execute("DELETE FROM entries WHERE id = ?", (entry_id,)).rowcount > 0

    @staticmethod
    def _open_board(db, board_id: int) -> None:
        row = db.execute("SELECT state FROM boards WHERE id = ?", (board_id,)).fetchone()
        if row is None or row["state"] == "closed":
            raise ClassError(text("class.board.closed"))
        if row["state"] == "revealed":
            raise ClassError(text("class.board.revealed"))

    # -- collections --

    def open_collection(self, name: str, classes: list[str], per_student: int = DEFAULT_PER_STUDENT,
                        total: int = DEFAULT_TOTAL) -> Collection:
        """A new collection, open to drawings; the one that was current is closed (its drawings
        stay)."""
        name = plain_name(name, "collection")
        classes = [plain_name(c, "class_name") for c in classes]
        if not 2 <= len(classes) <= MAX_CLASSES:
            raise ClassError(text("class.collection.class_count", low=2, high=MAX_CLASSES))
        if len(set(c.casefold() for c in classes)) != len(classes):
            raise ClassError(text("class.collection.repeated_class"))
        if int(per_student) < 1 or int(total) < 1:
            raise ClassError(text("class.collection.bad_caps"))
        with self._writing() as db:
            now = time.time()
            db.execute("UPDATE collections SET state = 'closed', closed = ? WHERE state = 'open'", (now,))
            cur = db.execute(
                "INSERT INTO collections (name, classes, per_student, total, created) VALUES (?, ?, ?, ?, ?)",
                (name, json.dumps(classes, ensure_ascii=False), int(per_student), int(total), now))
            collection_id = cur.lastrowid
        return self.collection(collection_id)

    def collection(self, collection_id: int) -> Collection | None:
        row = self._db().execute("SELECT * FROM collections WHERE id = ?", (collection_id,)).fetchone()
        return _collection(row) if row else None

    def current_collection(self) -> Collection | None:
        row = self._db().execute(
            "SELECT * FROM collections WHERE state = 'open' ORDER BY id DESC LIMIT 1").fetchone()
        return _collection(row) if row else None

    def collections(self) -> list[Collection]:
        return [_collection(r) for r in self._db().execute("SELECT * FROM collections ORDER BY id")]

    def close_collection(self, collection_id: int) -> Collection:
        with self._writing() as db:
            db.execute("UPDATE collections SET state = 'closed', closed = ? WHERE id = ? AND state = 'open'",
                       (time.time(), collection_id))
        return self.collection(collection_id)

    def add_drawing(self, collection_id: int, label: str, visitor: str, png: bytes) -> Drawing:
        """Keep one drawing (PNG bytes, already checked like an upload) under `label`. Refused
        when the collection is closed, the label is not one of its classes, or a cap is reached."""
        with self._writing() as db:
            row = db.execute("SELECT * FROM collections WHERE id = ?", (collection_id,)).fetchone()
            if row is None or row["state"] != "open":
                raise ClassError(text("class.collection.closed"))
            collection = _collection(row)
            if label not in collection.classes:
                raise ClassError(text("class.collection.unknown_class", label=str(label)[:MAX_NAME],
                                      classes=", ".join(collection.classes)))
            self._pace(db, "drawings", "drawing", visitor)
            total = db.execute("SELECT COUNT(*) FROM drawings WHERE collection_id = ?",
                               (collection_id,)).fetchone()[0]
            if total >= collection.total:
                raise ClassError(text("class.collection.full", limit=collection.total))
            mine = db.execute("SELECT COUNT(*) FROM drawings WHERE collection_id = ? AND visitor = ?",
                              (collection_id, visitor)).fetchone()[0]
            if mine >= collection.per_student:
                raise ClassError(text("class.collection.student_full", limit=collection.per_student))
            cur = db.execute("INSERT INTO drawings (collection_id, label, visitor, file, created)"
                             " VALUES (?, ?, ?, '', ?)", (collection_id, label, visitor, time.time()))
            drawing_id = cur.lastrowid
            relative = f"drawings/{collection_id}/{drawing_id}.png"
            _write_synced(self.folder / relative, png)   # on disk before the row commits
            db.execute("UPDATE drawings SET file = ? WHERE id = ?", (relative, drawing_id))
        return self.drawing(drawing_id)

    def drawing(self, drawing_id: int) -> Drawing | None:
        row = self._db().execute("SELECT * FROM drawings WHERE id = ?", (drawing_id,)).fetchone()
        return Drawing(**dict(row)) if row else None

    def drawings(self, collection_id: int, visitor: str | None = None) -> list[Drawing]:
        sql, args = "SELECT * FROM drawings WHERE collection_id = ?", [collection_id]
        if visitor is not None:
            sql, args = sql + " AND visitor = ?", args + [visitor]
        return [Drawing(**dict(r)) for r in self._db().execute(sql + " ORDER BY id", args)]

    def counts(self, collection_id: int, visitor: str | None = None) -> Counts:
        """Drawings per class (every class listed, zeros included), in all and by `visitor`."""
        collection = self.collection(collection_id)
        counts = Counts(by_label=dict.fromkeys(collection.classes if collection else [], 0))
        db = self._db()
        for label, n in db.execute("SELECT label, COUNT(*) FROM drawings WHERE collection_id = ?"
                                   " GROUP BY label", (collection_id,)):
            counts.by_label[label] = n
        counts.total = sum(counts.by_label.values())
        if visitor is not None:
            counts.mine = db.execute("SELECT COUNT(*) FROM drawings WHERE collection_id = ? AND visitor = ?",
                                     (collection_id, visitor)).fetchone()[0]
        return counts

    def delete_drawing(self, drawing_id: int) -> bool:
        with self._writing() as db:
            row = db.execute("SELECT file FROM drawings WHERE id = ?", (drawing_id,)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM drawings WHERE id = ?", (drawing_id,))
        # After the commit: a crash here leaves an orphan file, removed at the next open.
        (self.folder / row["file"]).unlink(missing_ok=True)
        return True

    def drawing_path(self, drawing: Drawing) -> Path:
        return self.folder / drawing.file

    def _remove_orphan_files(self) -> None:
        """Files of drawings whose row never committed (a crash between file and row), and files
        cut off mid-write. Inside a write transaction: another process adding a drawing writes its
        file before its row commits, and that file is not an orphan."""
        root = self.folder / "drawings"
        if not root.is_dir():
            return
        with self._writing() as db:
            known = {r[0] for r in db.execute("SELECT file FROM drawings")}
            for path in root.glob("*/*"):
                if path.suffix == ".tmp" or path.relative_to(self.folder).as_posix() not in known:
                    path.unlink(missing_ok=True)


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)   # the new name, too, is on disk
    finally:
        os.close(dir_fd)


def _board(row) -> Board:
    return Board(**{**dict(row), "data": json.loads(row["data"])})


def _entry(row) -> Entry:
    return Entry(**{**dict(row), "settings": json.loads(row["settings"])})


def _collection(row) -> Collection:
    return Collection(**{**dict(row), "classes": json.loads(row["classes"])})


_OPEN: dict[Path, ClassDB] = {}
_OPEN_LOCK = threading.Lock()


def class_db(runs_dir) -> ClassDB:
    """The database of the runs folder `runs_dir`, opened once per process."""
    folder = (Path(runs_dir) / FOLDER).resolve()
    with _OPEN_LOCK:
        if folder not in _OPEN:
            _OPEN[folder] = ClassDB(folder)
        return _OPEN[folder]
