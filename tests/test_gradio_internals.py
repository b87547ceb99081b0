"""The parts of gradio that vision_lab/ui/gradio_internals.py relies on, though gradio does not
promise to keep them. After a gradio upgrade, these fail first and say which part is gone."""
import inspect
import warnings
from types import SimpleNamespace

import gradio as gr
import gradio.queueing
import pytest

from vision_lab.ui.feature_maps import LenientImage
from vision_lab.ui.fields import Number, Slider
from vision_lab.ui.gradio_internals import calm_queue


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
    """The EN | 中文 switch calls the changeLocale that gradio's core frontend module exports."""
    from vision_lab.ui.gradio_internals import frontend_core_modules

    cores = frontend_core_modules()
    assert cores, "gradio's frontend has no assets/core-*.js any more: fix CHANGE_LOCALE_JS"
    assert any(" as changeLocale" in core.read_text() for core in cores), (
        "gradio's core frontend module no longer exports changeLocale: fix CHANGE_LOCALE_JS")
