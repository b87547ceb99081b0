"""What the app keeps for its visitors: each visitor's private runs, the shared folder, quotas,
retention and clean-up.

A visitor is a browser (a random token in a cookie the page sets, so a reload keeps your runs) or,
where there is no cookie (an API client), the Gradio session. Runs go to
`<runs folder>/.private/<hash of the visitor>/`: hidden folders are never listed, so nobody else's
picker shows them, and no URL serves a file from them (`HidePrivateRuns`). "Share" copies a run
into `<runs folder>/shared/`, which everybody sees.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import gradio as gr

from ..i18n import render, text

OWNER_COOKIE = "vision_lab_owner"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Set once per browser; getRandomValues works on plain http too (a lecture's LAN address).
SET_OWNER_COOKIE_JS = f"""() => {{
  if (!document.cookie.split('; ').some(c => c.startsWith('{OWNER_COOKIE}='))) {{
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const token = Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
    document.cookie = '{OWNER_COOKIE}=' + token + '; path=/; max-age=31536000; SameSite=Lax';
  }}
}}"""
SHARED = "shared"
PRIVATE = ".private"
# Never served by path: visitors' runs, and the class's database and drawings (serving.class_db),
# which hold the boards' hidden test figures.
HIDDEN = frozenset({PRIVATE, ".class"})


def owner_of(request) -> str | None:
    """Who is asking: the browser's token, else the session; None outside a request."""
    if request is None:
        return None
    try:
        token = (request.cookies or {}).get(OWNER_COOKIE)
    except AttributeError:
        token = None
    if token and _TOKEN.match(token):
        return f"browser:{token}"
    session = getattr(request, "session_hash", None)
    return f"session:{session}" if session else None


def visitor_of(request) -> str:
    """Who is asking, for what the class keeps per person (serving.class_db): the owner, or one
    shared "anonymous" outside a request."""
    return owner_of(request) or "anonymous"


class HidePrivateRuns:
    """ASGI middleware: every URL whose path goes through a `.private` (or `.class`) folder gets 404.

    gradio serves any file under launch(allowed_paths=...) at /gradio_api/file=<path>, and the runs
    folder has to be allowed: the Train tab hands a finished run to its owner from there, wherever
    --checkpoints puts it. gradio first copies such a download into its cache, under a folder named
    by the file's contents, and its owner fetches that copy; so no one ever needs a `.private` path,
    and refusing them all keeps a run private even from someone who has seen its path (it is in
    the run summary that /train returns).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _goes_through_private(scope["path"]):
            from starlette.responses import PlainTextResponse

            await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _goes_through_private(url_path: str) -> bool:
    # The server has decoded the path once; decoding again only refuses more. "=" ends the route's
    # own name ("file=<path>"); the case is ignored, as macOS and Windows file systems ignore it.
    return not HIDDEN.isdisjoint(re.split(r"[/\\=]", unquote(url_path).lower()))


def owner_dir(settings, owner: str | None) -> Path | None:
    if not owner:
        return None
    digest = hashlib.sha256(owner.encode()).hexdigest()[:24]
    return Path(settings.runs_dir) / PRIVATE / digest


def shared_dir(settings) -> Path:
    return Path(settings.runs_dir) / SHARED


def visible_dirs(settings, owner: str | None) -> list[str]:
    """The folders whose checkpoints this visitor may pick: shipped, shared, and their own."""
    mine = owner_dir(settings, owner)
    return list(settings.checkpoint_dirs) + ([str(mine)] if mine else [])


def resolve_checkpoint(settings, value, owner=None) -> str:
    """A picker value (a path) or, for API callers, a checkpoint name -> a path.

    Only checkpoints this visitor may see are accepted (shipped, shared, their own runs): a caller
    cannot make the server open an arbitrary file, or another visitor's run.
    """
    from ..checkpoints import CheckpointError, list_checkpoints

    if not value:
        raise gr.Error(render(text("features.choose_checkpoint")), print_exception=False)
    value = str(value)
    infos = list_checkpoints(*visible_dirs(settings, owner))
    for info in infos:
        if value in (str(info.path), info.name, info.path.name):
            return str(info.path)
    try:
        wanted = Path(value).resolve()
        for info in infos:
            if info.path.resolve() == wanted:
                return str(info.path)
    except OSError:
        pass
    names = ", ".join(info.name for info in infos) or text("features.none_yet")
    raise CheckpointError(text("features.no_such_checkpoint", name=Path(value).name, names=names))


def own_checkpoints(settings, owner: str | None):
    """This visitor's private runs (CheckpointInfo), newest first."""
    from ..checkpoints import list_checkpoints

    mine = owner_dir(settings, owner)
    return list_checkpoints(mine) if mine and mine.is_dir() else []


def folder_mb(folder) -> float:
    folder = Path(folder)
    if not folder.is_dir():
        return 0.0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def check_quota(settings, owner: str | None) -> None:
    """Refuse a new run (ValueError with the sentence to show) when storage is full."""
    if settings.visitor_quota_mb and owner:
        used = folder_mb(owner_dir(settings, owner))
        if used >= settings.visitor_quota_mb:
            raise ValueError(text("storage.visitor_quota", used=used,
                                  quota=settings.visitor_quota_mb))
    if settings.runs_quota_mb:
        used = folder_mb(settings.runs_dir)
        if used >= settings.runs_quota_mb:
            raise ValueError(text("storage.server_full", used=used, quota=settings.runs_quota_mb))


def _own_file(settings, owner, value) -> Path:
    """One of this visitor's runs, by path (a picker's value) or by name (an API caller's)."""
    from ..checkpoints import CheckpointError

    name = Path(str(value or "")).name
    if not name:
        raise ValueError(text("storage.choose_a_run"))
    mine = owner_dir(settings, owner)
    if mine is not None:
        root = mine.resolve()
        for path in (Path(str(value)), mine / name, mine / f"{name}.safetensors"):
            try:
                if path.is_file() and path.resolve().is_relative_to(root):
                    return path
            except OSError:
                continue
    raise CheckpointError(text("storage.not_yours", name=name))


_SHARE_LOCK = threading.Lock()


def share(settings, owner, path, name: str = "") -> Path:
    """Copy one of the visitor's runs into the shared folder, under `name` (or its own name)."""
    from ..checkpoints import atomic_write_bytes, read_metadata

    source = _own_file(settings, owner, path)
    read_metadata(source)  # only a valid checkpoint is shared
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", (name or source.stem).strip()).strip("-.")
    if not stem:
        raise ValueError(text("storage.bad_share_name", name=name))
    target_dir = shared_dir(settings)
    with _SHARE_LOCK:  # two visitors sharing under one name get two files, never one overwritten
        target, n = target_dir / f"{stem}.safetensors", 1
        while target.exists():
            n += 1
            target = target_dir / f"{stem}-{n}.safetensors"
        atomic_write_bytes(target, source.read_bytes())
    return target


def delete(settings, owner, path) -> str:
    target = _own_file(settings, owner, path)
    target.unlink()
    return target.stem


def sweep(settings) -> dict:
    """Remove what nobody needs any more: temp files of writes that were killed, and private runs
    older than the retention (when one is set). Returns what was removed, for the log."""
    from ..checkpoints import remove_stale_temp_files

    runs = Path(settings.runs_dir)
    removed = {"temp_files": len(remove_stale_temp_files(runs)), "private_runs": 0}
    private = runs / PRIVATE
    if settings.retention_hours and private.is_dir():
        cutoff = time.time() - settings.retention_hours * 3600
        for p in private.rglob("*.safetensors"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed["private_runs"] += 1
            except FileNotFoundError:
                continue
        for folder in sorted((d for d in private.rglob("*") if d.is_dir()), reverse=True):
            try:
                folder.rmdir()  # only empty ones
            except OSError:
                pass
    return removed


def start_janitor(settings, every: float = 3600.0) -> threading.Thread:
    """Sweep now, then every `every` seconds in a daemon thread.

    The first sweep runs on the calling thread: it imports torch (through checkpoints), and two
    threads importing torch and torchvision at once can meet torchvision half-imported (its
    package and `torchvision.transforms` import each other), which kills the app at start.
    """
    def sweep_quietly():
        try:
            sweep(settings)
        except OSError:
            pass  # a vanished folder; try again next time

    sweep_quietly()

    def loop():
        while True:
            time.sleep(every)
            sweep_quietly()

    thread = threading.Thread(target=loop, daemon=True, name="vision-lab-janitor")
    thread.start()
    return thread
