"""Latency of one image through the shipped MNIST cnn: in the library and through the app.

- library_classify: an encoded PNG (28x28 grey digit) -> decode, convert, resize, normalize
  (vision_lab.preprocessing) -> vision_lab.network_view.predict, all classes. What the /classify
  handler does per checkpoint, without gradio.
- library_feature_maps: vision_lab.network_view.feature_maps for one preprocessed image.
- handler_feature_maps: everything the Feature maps tab computes for one image, in-process
  (vision_lab.ui.feature_maps.run_feature_maps: decode, top-5, the feature-map mosaic, the filters,
  Grad-CAM and its overlay), without gradio.
- app_classify: gradio_client.Client.predict(handle_file(png), ["mnist_cnn"], api_name="/classify")
  against `python app.py` launched here; includes HTTP, queueing, upload, the handler and the
  download of its output images. Measured with gradio_client as it comes, and with one TLS context
  for all its requests (see _common.gradio_client: as it comes, the client itself spends most of
  the time building TLS contexts). Also reported: the CPU time per call of the caller and of the
  app's process.
- app_feature_maps: the same for /feature_maps (its defaults: maps, filters and Grad-CAM: four
  images to download).

p50 and p90 in milliseconds over repeated calls after warm-up calls (first-call costs such as
loading the checkpoint are reported separately).
"""
from __future__ import annotations

import io
import tempfile
import time

from _common import ROOT, App, cpu_seconds, emit, machine, parser, percentile

import numpy as np
from PIL import Image

CHECKPOINT = ROOT / "checkpoints" / "mnist_cnn.safetensors"


def digit_png() -> bytes:
    a = np.zeros((28, 28), dtype=np.uint8)
    a[5:23, 12:16] = 255  # a "1"
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def times_ms(fn, warmup: int, calls: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def summary(label, ms) -> dict:
    return {f"{label}_p50_ms": percentile(ms, 0.5), f"{label}_p90_ms": percentile(ms, 0.9)}


def library(calls: int, warmup: int) -> dict:
    from vision_lab.checkpoints import load_checkpoint
    from vision_lab.network_view import feature_maps, predict
    from vision_lab.preprocessing import image_to_tensor

    t = time.perf_counter()
    ckpt = load_checkpoint(CHECKPOINT)
    load_ms = (time.perf_counter() - t) * 1e3
    prep, classes = ckpt.preprocessing, ckpt.classes
    png = digit_png()

    def classify():
        x = prep(image_to_tensor(png, prep.channels, prep.image_size)[None])
        return predict(ckpt.model, x, classes, top_k=len(classes))

    x = prep(image_to_tensor(png, prep.channels, prep.image_size)[None])
    r = {"library_load_checkpoint_ms": load_ms}
    r |= summary("library_classify", times_ms(classify, warmup, calls))
    r |= summary("library_feature_maps", times_ms(lambda: feature_maps(ckpt.model, x), warmup, calls))
    with tempfile.TemporaryDirectory() as folder:
        r |= summary("handler_feature_maps",
                     times_ms(feature_maps_handler(png, folder), warmup, calls))
    return r


def feature_maps_handler(png: bytes, folder: str):
    """A call of the Feature maps tab's handler for `png` (written into `folder`), with the
    shipped checkpoints."""
    from types import SimpleNamespace

    from vision_lab.ui.feature_maps import run_feature_maps

    path = f"{folder}/digit.png"
    with open(path, "wb") as f:
        f.write(png)
    settings = SimpleNamespace(checkpoint_dirs=[str(CHECKPOINT.parent)], runs_dir=folder,
                               data_root=folder, examples_dir=None)
    return lambda: run_feature_maps(settings, "mnist_cnn", path)


def through_app(calls: int, warmup: int) -> dict:
    import os

    from gradio_client import handle_file

    r = {}
    with tempfile.TemporaryDirectory() as tmp, App(tmp) as app:
        png_path = f"{tmp}/digit.png"
        with open(png_path, "wb") as f:
            f.write(digit_png())
        endpoints = {
            "classify": lambda client: client.predict(handle_file(png_path), ["mnist_cnn"],
                                                      api_name="/classify"),
            "feature_maps": lambda client: client.predict(image=handle_file(png_path),
                                                          checkpoint="mnist_cnn",
                                                          api_name="/feature_maps"),
        }
        for suffix, one_tls_context in (("", False), ("_one_tls_context", True)):
            client = app.client(one_tls_context)
            for endpoint, call in endpoints.items():
                label = f"app_{endpoint}{suffix}"
                try:
                    t = time.perf_counter()
                    call(client)
                    r[f"{label}_first_call_ms"] = (time.perf_counter() - t) * 1e3
                    mine, server = sum(os.times()[:2]), cpu_seconds(app.proc.pid)
                    r |= summary(label, times_ms(lambda: call(client), warmup, calls))
                except Exception as e:  # a tab's parameters changed: report, do not fail the rest
                    r[f"{label}_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    continue
                n = warmup + calls
                r[f"{label}_caller_cpu_ms_per_call"] = (sum(os.times()[:2]) - mine) / n * 1e3
                r[f"{label}_app_cpu_ms_per_call"] = (cpu_seconds(app.proc.pid) - server) / n * 1e3
    return r


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--no-app", action="store_true", help="library figures only")
    args = p.parse_args(argv)
    warmup = 5
    if args.quick:
        args.calls, warmup = 3, 1
    t0 = time.perf_counter()
    result = {"machine": machine(), "checkpoint": CHECKPOINT.name}
    result |= library(args.calls, warmup)
    if not args.no_app:
        result |= through_app(max(args.calls // 2, 3), warmup)
    targets = {"library_classify_p50_ms": "target <= 20", "app_classify_p50_ms": "target <= 150",
               "app_classify_one_tls_context_p50_ms": "target <= 150",
               "handler_feature_maps_p50_ms": "target <= 300",
               "app_feature_maps_p50_ms": "target <= 300",
               "app_feature_maps_one_tls_context_p50_ms": "target <= 300"}
    rows = [(k, v, targets.get(k, "")) for k, v in result.items() if isinstance(v, float)]
    rows += [(k, v, "") for k, v in result.items() if k.endswith("_error")]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("latency", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
