"""'Continue from this checkpoint' in the Train tab (/continue_training and the page)."""
import time

import pytest

from vision_lab import i18n
from vision_lab.i18n import render, text

from conftest import open_tab, shipped, train_in_browser

RUN = dict(dataset="shapes", subset_train=300, subset_test=100, model="mlp", seed=4)


def test_continue_training_gives_the_uninterrupted_curve(client):
    straight = client.predict(**RUN, epochs=3, api_name="/train")[-1]
    first = client.predict(**RUN, epochs=2, api_name="/train")
    name = first[8]                                   # the checkpoint's name, as the tab shows it
    out = client.predict(checkpoint_name=name, epochs=3, api_name="/continue_training")
    status, command, summary = out[0], out[10], out[-1]
    assert summary["reason"] == "completed", status
    assert "Finished 3 epoch" in status
    assert [h["val_loss"] for h in summary["history"]] == [h["val_loss"] for h in straight["history"]]
    assert summary["test_acc"] == straight["test_acc"]
    assert command.endswith(f"--resume {name}.safetensors") and "--epochs 3" in command
    assert summary["checkpoint"] != first[-1]["checkpoint"]   # a new file; the first stays as it was
    # A checkpoint that cannot be continued says why, in one sentence.
    with pytest.raises(Exception) as info:
        client.predict(checkpoint_name=name, epochs=2, api_name="/continue_training")
    assert "has already trained 2 epoch(s)" in str(info.value) and "Traceback" not in str(info.value)


def test_an_old_checkpoint_says_it_cannot_be_continued(client):
    with pytest.raises(Exception) as info:
        client.predict(checkpoint_name=shipped("shapes_cnn"), epochs=9, api_name="/continue_training")
    assert "holds a model but not the training state needed to continue it" in str(info.value)


def test_the_reasons_read_in_chinese():
    said = text("resume.different", name="a.safetensors", setting="lr", theirs="0.001", ours="0.01")
    assert render(said, "zh") == ("a.safetensors 训练时 lr = 0.001，而本次训练要求 0.01：继续训练必须沿用"
                                  "开始时的设置，只能增加轮数。")
    assert "检查点" in i18n.catalogue("zh")["resume.ui.explained"]


def test_continue_in_the_browser_draws_the_two_curves_as_one(browser_page, screenshots):
    page = browser_page
    train_in_browser(page, images=240, epochs=3)      # straight through: the server keeps it
    train_in_browser(page, images=240, epochs=2)
    page.locator("#train-resume").click()             # the accordion
    page.locator("#train-resume-epochs input").fill("3")
    page.locator("#train-resume-button").click()
    note, deadline = page.locator("#train-resume-note"), time.time() + 300
    while "one curve" not in note.inner_text() and time.time() < deadline:
        time.sleep(1)
    assert "At epoch 3 the continued run's validation loss is" in note.inner_text()
    continued, straight = [float(w.rstrip(",:")) for w in note.inner_text().split()
                           if w[:1].isdigit() and "." in w][:2]
    assert continued == straight
    assert "Finished 3 epoch" in page.locator("#train-status").inner_text()
    page.locator("#train-resume-plot img").first.wait_for(timeout=30_000)   # the figure is drawn
    page.locator("#train-resume").screenshot(path=str(screenshots / "resume.png"))
