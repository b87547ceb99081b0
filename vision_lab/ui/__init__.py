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

ROOT = Path(__file__).resolve().parents[2]

INTRO = (
    "# Vision Lab\n"
    "See and compare image classifiers: **Augment** previews data augmentation, **Train** trains a "
    "model with live curves, **Compare** runs the course's lessons side by side, **Feature maps** "
    "looks inside a trained network and **Classify** tries it on your own images."
)

CSS = """
.vl-status textarea, .vl-status p { font-size: 1.05rem; }
footer { display: none !important; }
"""


def _default_runs_dir() -> str:
    return os.environ.get("VISION_LAB_CHECKPOINTS") or str(ROOT / "checkpoints")


@dataclass
class Settings:
    # The shipped demo checkpoints plus the folder new runs are saved under.
    checkpoint_dirs: list[str] = field(default_factory=list)
    runs_dir: str = field(default_factory=_default_runs_dir)
    data_root: str | None = None
    max_concurrent_trainings: int = 1
    examples_dir: str = str(ROOT / "examples")

    def __post_init__(self):
        if not self.checkpoint_dirs:
            dirs = [str(ROOT / "checkpoints"), self.runs_dir]
            self.checkpoint_dirs = list(dict.fromkeys(dirs))
        if self.max_concurrent_trainings < 1:
            raise ValueError("max_concurrent_trainings must be at least 1.")


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or Settings()
    # Training code saves new runs under $VISION_LAB_CHECKPOINTS/runs; keep it in step with
    # the runs folder the pickers list.
    os.environ["VISION_LAB_CHECKPOINTS"] = settings.runs_dir
    if settings.data_root:
        os.environ["VISION_LAB_DATA"] = settings.data_root

    from . import augment, classify, compare, feature_maps, train

    with gr.Blocks(title="Vision Lab") as demo:
        gr.Markdown(INTRO)
        # The Augment tab's current spec (a list of ops), read by the Train tab.
        augment_spec = gr.State([])
        with gr.Tabs():
            with gr.Tab("Augment", id="augment"):
                augment.build(settings, augment_spec=augment_spec)
            with gr.Tab("Train", id="train") as train_tab:
                train.build(settings, augment_spec=augment_spec, tab=train_tab)
            with gr.Tab("Compare", id="compare"):
                compare.build(settings)
            with gr.Tab("Feature maps", id="feature_maps") as tab:
                feature_maps.build(settings, tab=tab)
            with gr.Tab("Classify", id="classify") as tab:
                classify.build(settings, tab=tab)
    return demo

