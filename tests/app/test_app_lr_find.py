"""The Train tab's learning-rate range test as an API user calls it (gradio_client): /lr_find takes
the same form as /train and returns the curve, the two suggestions and the numbers."""
import pytest

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")


def test_lr_find_on_shapes_suggests_two_lrs_inside_the_swept_range(client):
    out = client.predict(dataset="shapes", subset_train=600, subset_test=100, model="cnn",
                         batch_size=32, api_name="/lr_find")
    # The box and the two buttons are not API outputs: the curve, the note and the numbers are.
    figure, note, values = out
    assert figure is not None and figure.get("plot"), figure     # a drawn figure
    for name in ("steepest", "min_div_10"):
        lr = values[name]
        assert lr > 0 and values["start_lr"] <= lr <= values["end_lr"], values
    assert values["steps"] >= 10 and values["train_images"] > 0
    assert "Steepest descent" in note and "Min ÷ 10" in note and "misleads" in note
    assert f"{values['steepest']:.2g}" in note and f"{values['min_div_10']:.2g}" in note


def test_lr_find_says_when_it_sweeps_fewer_images_than_the_form_asks():
    """All of a dataset is capped to a small subset, and the note says so (checked on the handler's
    note only: the sweep itself is the one above)."""
    from vision_lab.ui.lr_find import LR_FIND_IMAGES, lr_find_outputs
    from vision_lab.lr_finder import LRFinderResult
    from vision_lab.train_config import TrainConfig

    class Data:
        name = "shapes"

        def split(self, name):
            return [0] * 1800, [0] * 1800

    lrs = [1e-6 * 10 ** (i / 10) for i in range(40)]
    result = LRFinderResult(lrs=lrs, losses=[2.0] * 40, raw_losses=[2.0] * 40, steepest=1e-3,
                            min_div_10=1e-4, diverged_at=None)
    note = lr_find_outputs(result, TrainConfig(), Data(), capped=True)[2]
    assert f"at most {LR_FIND_IMAGES} training images" in str(note)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"lr": "abc"}, "Learning rate"),
    ({"dataset": "no_such_dataset"}, "no_such_dataset"),
])
def test_lr_find_bad_input_gives_a_clear_message(client, kwargs, message):
    with pytest.raises(Exception) as info:
        client.predict(**{"subset_train": 64, "subset_test": 32, **kwargs}, api_name="/lr_find")
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_use_buttons_put_the_suggestion_in_the_lr_field_as_shown():
    from vision_lab.ui.lr_find import use_suggestion

    values = {"steepest": 0.0014174741629268052, "min_div_10": 0.016297508346206444}
    assert use_suggestion("steepest", values) == 0.0014
    assert use_suggestion("min_div_10", values) == 0.016
    assert use_suggestion("steepest", None).get("__type__") == "update"  # no sweep yet: nothing
