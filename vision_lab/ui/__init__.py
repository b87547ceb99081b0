"""The Gradio app: one module per tab, assembled here.

`build_app(settings)` lays out the tabs in teaching order. Each tab module exposes
`build(settings)` and is called inside its `gr.Tab`. Heavy imports (torch, the library) happen
inside the tab builders and handlers, so importing this package stays cheap.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from ..i18n import text
from .language import ui_text
from .lecture import CSS as LECTURE_CSS

ROOT = Path(__file__).resolve().parents[2]

TITLE = "Vision Lab"  # a name: the same in every language
INTRO = ui_text("app.intro")
# (tab id, catalogue key of its name), in teaching order.
TABS = {"augment": "app.tab.augment", "train": "app.tab.train", "compare": "app.tab.compare",
        "feature_maps": "app.tab.feature_maps", "classify": "app.tab.classify", "class": "app.tab.class"}

CSS = """
.vl-status textarea, .vl-status p { font-size: 1.05rem; }
footer { display: none !important; }
""" + LECTURE_CSS


def _default_runs_dir() -> str:
    return os.environ.get("VISION_LAB_CHECKPOINTS") or str(ROOT / "checkpoints")


ON_DISCONNECT = ("stop", "finish")


@dataclass
class Settings:
    # The shipped demo checkpoints plus the folder new runs are saved under (`runs_dir`): what
    # every visitor's pickers list. Each visitor's own runs are kept apart (see storage.py).
    checkpoint_dirs: list[str] = field(default_factory=list)
    runs_dir: str = field(default_factory=_default_runs_dir)
    data_root: str | None = None
    max_concurrent_trainings: int = 1
    max_waiting_trainings: int = 8
    # What a run does when the page that started it closes: "stop" (keeps its finished epochs)
    # or "finish" (runs to its end; the visitor finds it under their runs when they come back).
    on_disconnect: str = "stop"
    # Lecture mode for every visitor who has not chosen (each can still turn it off): lecture.py.
    lecture: bool = False
    # Served to other people (a Space, a LAN address, a share link): `folder:` paths are limited
    # to the data folder, and the storage limits below default to on.
    public: bool = False
    visitor_quota_mb: float | None = None   # per visitor's private runs; 0: no limit
    runs_quota_mb: float | None = None      # the whole runs folder; 0: no limit
    retention_hours: float | None = None    # private runs older than this are deleted; 0: kept
    max_upload_mb: float = 200.0
    examples_dir: str = str(ROOT / "examples")
    # What opens, reveals and closes a class board or collection (serving.lecturer_key); None: the
    # server has no lecturer. Never shown: left out of the settings' repr.
    lecturer_key: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if not self.checkpoint_dirs:
            dirs = [str(ROOT / "checkpoints"), self.runs_dir]
            self.checkpoint_dirs = list(dict.fromkeys(dirs))
        if self.max_concurrent_trainings < 1:
            raise ValueError(text("app.settings.concurrent"))
        if self.max_waiting_trainings < 0:
            raise ValueError(text("app.settings.negative", name="max_waiting_trainings"))
        if self.on_disconnect not in ON_DISCONNECT:
            raise ValueError(text("app.settings.on_disconnect", choices=", ".join(ON_DISCONNECT),
                                  value=repr(self.on_disconnect)))
        from ..serving.lecturer_key import check_key_setting

        self.lecturer_key = check_key_setting(self.lecturer_key)
        # On a laptop nothing is limited; on a public server, what a crowd can fill is.
        defaults = {"visitor_quota_mb": 500.0, "runs_quota_mb": 10_000.0, "retention_hours": 48.0}
        for name, public_default in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, public_default if self.public else 0.0)
            if getattr(self, name) < 0:
                raise ValueError(text("app.settings.negative", name=name))


def chosen_tab(request: gr.Request = None):
    """The tab the address opens: `?tab=NAME`, or Train when it sets a Train field (share.py)."""
    from ..train_fields import linked

    query = dict(getattr(request, "query_params", None) or {})
    tab = query.get("tab") or ("train" if set(linked()) & set(query) else None)
    return gr.Tabs(selected=tab) if tab in TABS else gr.skip()


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or Settings()
    # Training code saves new runs under $VISION_LAB_CHECKPOINTS/runs; keep it in step with
    # the runs folder the pickers list.
    os.environ["VISION_LAB_CHECKPOINTS"] = settings.runs_dir
    if settings.data_root:
        os.environ["VISION_LAB_DATA"] = settings.data_root

    from . import augment, class_tab, classify, compare, feature_maps, language, lecture, train
    from ..serving.run_queue import RUNS
    from .gradio_internals import atomic_image_cache, sessions_on_demand
    from .storage import SET_OWNER_COOKIE_JS, start_janitor

    atomic_image_cache()
    sessions_on_demand()
    RUNS.configure(settings.max_concurrent_trainings, settings.max_waiting_trainings)
    start_janitor(settings)
    # Uploads and outputs live in gradio's cache: files older than 6 hours are removed hourly.
    with gr.Blocks(title=TITLE, delete_cache=(3600, 6 * 3600)) as demo:
        with gr.Row(equal_height=False):
            gr.Markdown(INTRO)
            with gr.Column(scale=0, min_width=240):   # EN | 简 | 繁 on one line
                language_switch = language.switch()
                lecture_switch = lecture.toggle(settings.lecture)
        # The Augment tab's current spec (a list of ops), read by the Train tab.
        augment_spec = gr.State([])
        with gr.Tabs() as tabs:
            with gr.Tab(ui_text(TABS["augment"]), id="augment"):
                augment.build(settings, augment_spec=augment_spec)
            with gr.Tab(ui_text(TABS["train"]), id="train") as train_tab:
                train.build(settings, augment_spec=augment_spec, tab=train_tab)
            with gr.Tab(ui_text(TABS["compare"]), id="compare"):
                compare.build(settings)
            with gr.Tab(ui_text(TABS["feature_maps"]), id="feature_maps") as tab:
                feature_maps.build(settings, tab=tab)
            with gr.Tab(ui_text(TABS["classify"]), id="classify") as tab:
                classify.build(settings, tab=tab)
            with gr.Tab(ui_text(TABS["class"]), id="class") as tab:
                class_tab.build(settings, tab=tab)
        demo.load(None, js=SET_OWNER_COOKIE_JS)
        # `?tab=compare` (or a Train field in the address: share.py) opens that tab.
        demo.load(chosen_tab, None, tabs, queue=False, api_visibility="private")
        language.wire(demo, language_switch)
        lecture.wire(demo, lecture_switch)

        def page_closed(request: gr.Request):
            """A closed or reloaded tab: its runs stop unless the server lets them finish."""
            if settings.on_disconnect == "stop":
                RUNS.stop(getattr(request, "session_hash", None) or "anonymous")

        demo.unload(page_closed)
    return demo
