"""Every place Vision Lab relies on a part of gradio that gradio does not promise to keep.

Checked with gradio 6.0.0, 6.28.0 (the floor in requirements.txt) and 6.31.0 (`sessions_on_demand`:
6.28.0 and 6.31.0). After a gradio upgrade, run
`python -m pytest tests/app/test_gradio_internals.py`: it fails, naming the attribute, when one of these
is gone or no longer does what we use it for.
"""
from __future__ import annotations

import warnings


def drawn_as(block_name: str):
    """Class decorator: the browser draws this gradio component subclass as gradio's built-in
    `block_name` component ("image", "number", ...).

    The page picks a component's Svelte code by `get_block_name()`, and `gr.load()` rebuilds it by
    `get_block_class()`; both default to the lowercased class name, so a subclass such as
    `LenientImage` would ask for a "lenientimage" component that the browser does not have.
    """
    def decorate(cls):
        cls.get_block_name = lambda self: block_name
        cls.get_block_class = lambda self: block_name
        return cls

    return decorate


def calm_queue(demo, poll: float = 0.025) -> None:
    """Make gradio's queue look for new work every `poll` seconds instead of every millisecond.

    Its default loop wakes about 1,000 times a second even when nobody uses the app: 0.066 core-s
    a second on the 2-core test machine, taken from a training there. Each wake-up costs ~0.23 ms:
    at 10 ms that was still 0.027 core-s a second, half of all the app spends while it shows a
    training (benchmarks/app_overhead.py); at 25 ms it measured 0.009. A request waits for the next
    wake-up: 12 ms on average, against the 60-200 ms a call through gradio_client takes.
    Call after `demo.queue()`. A gradio without these settings still serves, only busier: say so.
    """
    queue = getattr(demo, "_queue", None)
    names = ("sleep_when_free", "progress_update_sleep_when_free")
    if queue is None or not all(hasattr(queue, name) for name in names):
        warnings.warn("This gradio's queue has no sleep_when_free settings: the idle app keeps "
                      "polling every millisecond (see vision_lab/ui/gradio_internals.py).",
                      stacklevel=2)
        return
    queue.sleep_when_free = max(queue.sleep_when_free, poll)
    # Progress updates are only looked for; nothing is lost by looking less often.
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 10 * poll)


ANALYTICS_EVERY = 500


def rarer_analytics(demo, every: int = ANALYTICS_EVERY) -> None:
    """Make gradio's queue recompute its monitoring summary every `every` finished events, not
    after each one.

    After every event the queue builds a pandas DataFrame of its last 10,000 events and groups it
    by function, for its /monitoring page: 5 ms with 200 events behind it, 8 ms with 2,000 and
    19 ms with 10,000 (on the 2-core test machine), under the GIL. In a class, with ten visitors
    classifying and thirty trainings reporting, that was 9% of the server's busy time (py-spy,
    benchmarks/classroom.py), and every other request waited behind it. The page still shows the
    summary, at most `every` events old. Call after `demo.queue()`; a gradio without the setting
    still serves, only busier: say so.
    """
    queue = getattr(demo, "_queue", None)
    name = "ANAYLTICS_CACHE_FREQUENCY"   # sic: gradio's spelling
    if queue is None or not hasattr(queue, name):
        warnings.warn("This gradio's queue has no ANAYLTICS_CACHE_FREQUENCY: it recomputes its "
                      "monitoring summary after every event (see vision_lab/ui/gradio_internals.py).",
                      stacklevel=2)
        return
    setattr(queue, name, max(getattr(queue, name), every))


# The page's static text follows gradio's frontend locale (svelte-i18n). gradio changes it from its
# own Settings panel through `changeLocale`, exported by its core module (assets/core-<hash>.js);
# the language switch finds that module among the page's loaded scripts and calls the same.
CHANGE_LOCALE_JS = """
  const core = performance.getEntriesByType("resource").map((e) => e.name)
    .find((name) => /\\/assets\\/core-[^/]*\\.js$/.test(name));
  if (core) (await import(core)).changeLocale(lang);
"""


# gradio 6.31's page titles every error toast "Error": the title a gr.Error carries reaches the
# page as `title`, and the page reads `_title`. This retitles each error toast as it appears,
# with `titles` (the language switch's value -> the catalogue's word) for the page's language.
TOAST_TITLE_JS = """
() => {
  const titles = %s;
  const retitle = () => {
    const title = titles[[...document.querySelectorAll("#language-switch input")]
      .find((i) => i.checked)?.value];
    if (!title) return;
    document.querySelectorAll(".toast-title.error").forEach((el) => {
      const node = [...el.childNodes].find((n) => n.nodeType === Node.TEXT_NODE && n.data.trim());
      if (node && node.data.trim() === "Error") node.data = title + " ";
    });
  };
  new MutationObserver(retitle).observe(document.body, {childList: true, subtree: true});
}
"""


def frontend_core_modules() -> list:
    """gradio's frontend core module files, where CHANGE_LOCALE_JS looks for changeLocale."""
    from pathlib import Path

    import gradio

    return sorted((Path(gradio.__file__).parent / "templates" / "frontend" / "assets").glob("core-*.js"))


def atomic_image_cache() -> None:
    """Make gradio write the images a handler returns under a temporary name and rename them into
    place, as it already does for files (`processing_utils.save_file_to_cache`).

    gradio names a returned image by a hash of its bytes and rewrites that file on every call. When
    two visitors get the same image at once (a class classifying the same example digit), one
    call truncates the file while the other's browser or client is downloading it: the download
    ends short ("peer closed connection without sending complete message body"). Images and
    galleries (feature maps, Grad-CAM, augmentation previews) all go through this one function.
    Safe to call more than once.
    """
    import os
    import tempfile
    from pathlib import Path

    from gradio import processing_utils

    original = processing_utils.save_pil_to_cache
    if getattr(original, "vision_lab_atomic", False):
        return

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if path.exists():
            # Same bytes under the same name: leave them be, only age them from now (gradio's
            # delete_cache looks at the file's time, as save_file_to_cache does).
            try:
                os.utime(path)
            except OSError:
                pass
            return str(path)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=f".{format}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(path)

    save_pil_to_cache.vision_lab_atomic = True
    save_pil_to_cache.original = original
    processing_utils.save_pil_to_cache = save_pil_to_cache


class _ConfigsOnDemand(dict):
    """A session's `config_values` whose entries are made when first asked for.

    gradio keeps, per visitor, each block's config as it was when the session began (to rebuild
    the page for a deep link) and makes all of them at once when the visitor's first request
    arrives, on the server's event loop: for this app's ~375 blocks 0.1-0.2 s, during which the
    whole server answers nobody. A class of 30 pressing Train together stalled every other
    visitor for several seconds. Made when asked for, each entry is the same: the block objects
    are kept as they were then, and a block that changes gets its entry set anew by gradio.
    """

    def __init__(self, blocks_config, blocks: dict, ids):
        super().__init__()
        self._config = blocks_config
        self._blocks = {k: v for k, v in blocks.items() if k in ids}  # the blocks as they are now
        self._order = list(self._blocks)

    def _make(self, key):
        block = self._blocks.pop(key)
        value = self._config.config_for_block(key, [], block)
        dict.__setitem__(self, key, value)
        return value

    def _make_all(self) -> None:
        """Every entry, in gradio's order: the blocks' own, then any gradio added since."""
        if not self._blocks:
            return
        made = dict(dict.items(self))
        dict.clear(self)
        for key in self._order:
            if key in made:
                dict.__setitem__(self, key, made.pop(key))
            elif key in self._blocks:
                self._make(key)
        for key, value in made.items():
            dict.__setitem__(self, key, value)

    def __missing__(self, key):
        if key in self._blocks:
            return self._make(key)
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or key in self._blocks

    def __setitem__(self, key, value) -> None:
        self._blocks.pop(key, None)
        dict.__setitem__(self, key, value)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._blocks)

    def __iter__(self):
        self._make_all()
        return dict.__iter__(self)

    def keys(self):
        self._make_all()
        return dict.keys(self)

    def values(self):
        self._make_all()
        return dict.values(self)

    def items(self):
        self._make_all()
        return dict.items(self)


def sessions_on_demand() -> None:
    """Make a new visitor's session cheap to open: see `_ConfigsOnDemand`. Safe to call more than
    once. gradio's SessionState.__init__ builds `config_values` from `blocks.blocks` and
    `blocks.default_config`; it is handed a stand-in with no blocks (so it builds nothing) and the
    entries are made on demand instead."""
    from types import SimpleNamespace

    from gradio import state_holder

    original = state_holder.SessionState.__init__
    if getattr(original, "vision_lab_on_demand", False):
        return

    def __init__(self, blocks):
        original(self, SimpleNamespace(default_config=blocks.default_config, blocks={}))
        self.config_values = _ConfigsOnDemand(self.blocks_config, self.blocks_config.blocks,
                                              blocks.blocks)

    __init__.vision_lab_on_demand = True
    __init__.original = original
    state_holder.SessionState.__init__ = __init__
