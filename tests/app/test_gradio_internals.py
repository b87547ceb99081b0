"""The parts of gradio that vision_lab/ui/gradio_internals.py relies on, though gradio does not
promise to keep them. After a gradio upgrade, these fail first and say which part is gone."""
import inspect
import warnings
from types import SimpleNamespace

import gradio as gr
import gradio.queueing
import pytest

from vision_lab.ui.fields import Number, Slider
from vision_lab.ui.gradio_internals import calm_queue, rarer_analytics
from vision_lab.ui.model_view import LenientImage


def test_calm_queue_makes_gradios_idle_queue_poll_less_often():
    demo = gr.Blocks().queue()
    queue = getattr(demo, "_queue", None)
    assert isinstance(queue, gradio.queueing.Queue), "gradio no longer keeps its queue in Blocks._queue"
    # The settings only help while gradio's loops still sleep for them between looks.
    source = inspect.getsource(gradio.queueing.Queue)
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        assert f"asyncio.sleep(self.{name})" in source, f"gradio's queue no longer sleeps for {name}"
    calm_queue(demo)
    assert queue.sleep_when_free >= 0.025 and queue.progress_update_sleep_when_free >= 0.25


def test_calm_queue_says_so_when_gradio_has_no_such_settings():
    with pytest.warns(UserWarning, match="polling every millisecond"):
        calm_queue(SimpleNamespace(_queue=SimpleNamespace()))


def test_rarer_analytics_makes_gradio_summarise_its_events_once_in_many():
    demo = gr.Blocks().queue()
    queue = demo._queue
    records = [{"time": 0.0, "status": "success", "function": "classify", "process_time": 0.05}] * 50
    built = []
    real = queue._get_df
    queue._get_df = lambda records: built.append(len(records)) or real(records)
    rarer_analytics(demo, every=100)
    for _ in range(250):      # as gradio's queue does after each finished event
        queue.events_recorded += 1
        summary = queue.compute_analytics_summary(records)
    assert built == [50, 50]   # after the 100th and the 200th event, not 250 times
    assert summary["functions"]["classify"]["total_requests"] == 50


def test_rarer_analytics_says_so_when_gradio_has_no_such_setting():
    with pytest.warns(UserWarning, match="after every event"):
        rarer_analytics(SimpleNamespace(_queue=SimpleNamespace()))


@pytest.mark.parametrize("ours, gradios", [
    (lambda: Number(label="n"), lambda: gr.Number(label="n")),
    (lambda: Slider(label="s"), lambda: gr.Slider(label="s")),
    (lambda: LenientImage(), lambda: gr.Image()),
])
def test_our_component_subclasses_reach_the_browser_as_gradios_own(ours, gradios):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gr.Blocks() as demo:
            mine, builtin = ours(), gradios()
    types = {c["id"]: c["type"] for c in demo.get_config_file()["components"]}
    # The page draws each component by this name; a name gradio has no component for is a blank box.
    assert types[mine._id] == types[builtin._id], "gradio no longer names components by get_block_name()"
    assert mine.get_block_class() == builtin.get_block_class()


def test_the_language_switch_finds_gradios_change_locale():
    """The EN | 简 | 繁 switch calls the changeLocale that gradio's core frontend module exports."""
    from vision_lab.ui.gradio_internals import frontend_core_modules

    cores = frontend_core_modules()
    assert cores, "gradio's frontend has no assets/core-*.js any more: fix CHANGE_LOCALE_JS"
    assert any(" as changeLocale" in core.read_text() for core in cores), (
        "gradio's core frontend module no longer exports changeLocale: fix CHANGE_LOCALE_JS")


def _short_reads(save, image, seconds: float = 1.0) -> int:
    """Save `image` to one cache folder over and over in a thread while reading the file back
    here; how many reads came back shorter than the image."""
    import os
    import tempfile
    import threading
    import time

    with tempfile.TemporaryDirectory() as cache:
        path = save(image, cache, format="png")
        size, short, stop = os.path.getsize(path), 0, time.time() + seconds
        writer = threading.Thread(target=lambda: [save(image, cache, format="png")
                                                  for _ in iter(lambda: time.time() < stop, False)])
        writer.start()
        while time.time() < stop:
            with open(path, "rb") as f:
                short += len(f.read()) != size
        writer.join()
    return short


def test_an_image_two_visitors_get_at_once_is_never_downloaded_half_written():
    """gradio rewrites a returned image's cached file in place on every call; a class classifying
    one example digit then downloads truncated images (CI saw it: 'peer closed connection')."""
    import numpy as np
    from gradio import processing_utils
    from PIL import Image

    from vision_lab.ui.gradio_internals import atomic_image_cache

    image = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8"))
    atomic_image_cache()
    save = processing_utils.save_pil_to_cache
    assert getattr(save, "vision_lab_atomic", False)
    assert "def save_pil_to_cache(" in inspect.getsource(save.original), (
        "gradio no longer saves returned images through processing_utils.save_pil_to_cache")
    assert _short_reads(save, image) == 0
    # Arrays (galleries, feature maps) are saved through the same function.
    assert "save_pil_to_cache(" in inspect.getsource(processing_utils.save_img_array_to_cache)


def _small_app():
    with gr.Blocks() as demo:
        name = gr.Textbox(label="name", value="Ada")
        count = gr.Number(label="count", value=3)
        state = gr.State([1, 2])
        out = gr.Markdown()
        gr.Button("go").click(lambda n, c, s: f"{n} {c} {s}", [name, count, state], out)
    return demo, name, count, state


def test_a_new_session_makes_its_blocks_configs_only_when_asked_and_they_are_gradios_own(monkeypatch):
    """A visitor's first request made gradio build every block's config on the server's event loop
    (0.1-0.2 s for this app): a class pressing at once stalled everyone else for seconds."""
    from gradio import state_holder
    from gradio.blocks import BlocksConfig

    from vision_lab.ui.gradio_internals import sessions_on_demand

    demo, name, count, state = _small_app()
    sessions_on_demand()
    sessions_on_demand()  # twice is once
    original = state_holder.SessionState.__init__.original
    assert getattr(original, "vision_lab_on_demand", False) is False
    assert "self.config_values = {" in inspect.getsource(original), (
        "gradio's SessionState no longer builds config_values in __init__")
    eager = state_holder.SessionState.__new__(state_holder.SessionState)
    original(eager, demo)

    made = []
    real = BlocksConfig.config_for_block
    monkeypatch.setattr(BlocksConfig, "config_for_block",
                        staticmethod(lambda key, *a: made.append(key) or real(key, *a)))
    lazy = state_holder.SessionState(demo)
    assert made == [], "a new session still builds every block's config at once"
    assert lazy[count._id] is count and lazy[state._id] == [1, 2]  # the session itself works
    assert count._id in lazy.config_values and lazy.config_values[count._id] == eager.config_values[count._id]
    assert made == [count._id]
    # What a deep link reads: every block's config, the same as gradio's own.
    assert list(lazy.components) == list(eager.components)
    assert len(lazy.config_values) == len(eager.config_values)
    # gradio sets an entry anew when a block changes; then that one is kept.
    lazy._update_value_in_config(name._id, "Grace")
    assert lazy.config_values[name._id]["props"]["value"] == "Grace"


def test_the_app_opens_sessions_on_demand(monkeypatch, tmp_path):
    from gradio import state_holder

    from vision_lab.ui import Settings, build_app

    init = state_holder.SessionState.__init__
    monkeypatch.setattr(state_holder.SessionState, "__init__", getattr(init, "original", init))
    monkeypatch.setenv("VISION_LAB_CHECKPOINTS", str(tmp_path))  # build_app sets it: put back after
    build_app(Settings(runs_dir=str(tmp_path)))
    assert getattr(state_holder.SessionState.__init__, "vision_lab_on_demand", False)
