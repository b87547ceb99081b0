"""The learning-curves lesson through the app's API (gradio_client), as a Python user runs it."""
import pytest

from conftest import api_client

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")


def test_compare_runs_the_learning_curves_lesson(app_url):
    client = api_client(app_url)
    status, verdict, table, acc_plot, _, _ = client.predict(
        lesson_name="Learning curves: MLP vs CNN", dataset_name="shapes", size_name="quick",
        api_name="/compare")
    assert "Done" in status and "8 runs" in status
    assert "with one seed" in verdict and verdict.lstrip("#ℹ️ ").startswith("Test accuracy rises")
    runs = [row[0] for row in table["data"]]
    assert runs == [f"{model}, {percent}% of the images"
                    for model in ("MLP", "CNN") for percent in (5, 20, 50, 100)]
    headers = table["headers"]
    assert all(dict(zip(headers, row))["ended"] == "completed" for row in table["data"])
    assert acc_plot is not None   # the learning curve (its axes: tests/core/test_lessons.py)
