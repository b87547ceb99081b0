"""The Train tab's "Download as ONNX" as an API user calls it (gradio_client): /export_onnx."""
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")


def test_export_onnx_of_a_checkpoint_gives_an_onnx_file(client):
    onnx = pytest.importorskip("onnx")
    path = client.predict(checkpoint_name="shapes_cnn", api_name="/export_onnx")
    assert Path(path).name == "shapes_cnn.onnx" and Path(path).is_file()
    proto = onnx.load(path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert "classes" in props and proto.graph.input[0].name == "pixels"


def test_export_onnx_without_a_run_says_to_train_first(client):
    with pytest.raises(Exception) as info:
        client.predict(checkpoint_name="", api_name="/export_onnx")
    assert "train a model first" in str(info.value) and "Traceback" not in str(info.value)


def test_export_onnx_without_the_onnx_package_names_the_pip_command(monkeypatch, tmp_path):
    import gradio as gr

    from vision_lab import export
    from vision_lab.i18n import text
    from vision_lab.ui import Settings
    from vision_lab.ui.train import export_onnx_file

    def missing(module, requirement, purpose):
        raise export.OnnxUnavailable(text("export.missing_package", purpose=purpose, module=module,
                                          requirement=requirement))

    monkeypatch.setattr(export, "_optional_import", missing)
    with pytest.raises(gr.Error) as info:
        export_onnx_file(Settings(runs_dir=str(tmp_path)), "shapes_cnn")
    assert "pip install 'onnx>=1.23'" in str(info.value.message)
