"""Target 5: classify one image with the shipped MNIST cnn (library and through gradio_client),
and feature maps for one image. Prints p50/p95 in milliseconds and the ratio to each target.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

from _common import PYTHON, ROOT, emit, free_port, machine, median, parser, wait_for_http

CHECKPOINT = ROOT / "checkpoints" / "mnist_cnn.safetensors"
DIGIT = ROOT / "examples" / "digit_7.png"
TARGETS_MS = {"classify_library_p50": 20, "classify_client_p50": 150, "feature_maps_library_p50": 300}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def timed(fn, n: int) -> list[float]:
    fn()  # warm-up: first call pays for lazy imports and allocator growth
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def library_latencies(n: int) -> dict:
    import torch

    from vision_lab.checkpoints import load_checkpoint
    from vision_lab.inspect import feature_maps, grad_cam, predict
    from vision_lab.preprocessing import image_to_tensor

    ckpt = load_checkpoint(CHECKPOINT)
    prep = ckpt.preprocessing

    def classify():
        x = prep(image_to_tensor(DIGIT, prep.channels, prep.image_size).unsqueeze(0))
        return predict(ckpt.model, x, ckpt.classes, top_k=5)

    def maps():
        x = prep(image_to_tensor(DIGIT, prep.channels, prep.image_size).unsqueeze(0))
        feature_maps(ckpt.model, x, max_channels=16)
        grad_cam(ckpt.model, x)
        return predict(ckpt.model, x, ckpt.classes)

    with torch.inference_mode(False):
        return {"classify_library": timed(classify, n), "feature_maps_library": timed(maps, n)}


def client_latencies(n: int) -> dict:
    from gradio_client import Client, handle_file

    port = free_port()
    home = tempfile.mkdtemp(prefix="vl-bench-")
    env = {**os.environ, "VISION_LAB_CHECKPOINTS": home, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([PYTHON, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", 180, proc)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image = handle_file(str(DIGIT))
        return {"classify_client": timed(
            lambda: client.predict(image, ["mnist_cnn"], api_name="/classify"), n)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    n = 5 if args.quick else 50
    samples = library_latencies(n)
    samples.update(client_latencies(3 if args.quick else 30))
    figures = {}
    for name, values in samples.items():
        figures[f"{name}_p50"] = median(values)
        figures[f"{name}_p95"] = percentile(values, 0.95)
    ratios = {f"{k}_of_target": figures[k] / t for k, t in TARGETS_MS.items()}
    result = {"machine": machine(), "ms": figures, "targets_ms": TARGETS_MS, "ratios": ratios,
              "samples": {k: len(v) for k, v in samples.items()}}
    rows = [(k, v, "ms") for k, v in figures.items()]
    rows += [(k, v, f"(≤ 1 meets the target of {TARGETS_MS[k[:-len('_of_target')]]} ms)")
             for k, v in ratios.items()]
    emit("latency", result, rows, args.json)


if __name__ == "__main__":
    main()
