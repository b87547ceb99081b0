"""Cost of each saliency method, and of comparing two checkpoints, on the shipped checkpoints.

- library_<method>_<checkpoint>: vision_lab.saliency.saliency_map for one preprocessed image (the
  network part: Grad-CAM and the input gradient are one forward and one backward pass; Grad-CAM++
  the same; occlusion about a hundred forward passes, in batches of 64).
- handler_<method>: everything the Feature maps tab computes for one image with that method
  (vision_lab.ui.feature_maps.run_feature_maps on mnist_cnn: decode, top 5, the feature-map
  mosaic, the filters, the saliency map and its overlay), without gradio.
- handler_pair_<method>: the "Compare with another checkpoint" handler (vision_lab.ui.pair.run_pair,
  mnist_cnn against shapes_cnn: each one's input, saliency map, top 5 and layer activity).

Each figure is a p50 in milliseconds over repeated calls after warm-up calls, every variant called
in turn in each round; the ratios (`<x>_vs_grad_cam`) are measured in the same run, which is what
they are for: a busy machine slows both sides alike.
"""
from __future__ import annotations

import tempfile
import time
from types import SimpleNamespace

from _common import ROOT, emit, machine, parser, percentile

CHECKPOINTS = ("mnist_cnn", "shapes_cnn")
METHODS = ("grad_cam", "grad_cam_plus_plus", "occlusion", "input_gradient")
IMAGE = ROOT / "examples" / "digit_7.png"


def p50s_ms(variants: dict, warmup: int, calls: int) -> dict:
    """p50 of each variant in ms, the variants interleaved call by call so that a change of the
    machine's load during the run hits them all alike."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in variants}
    for _ in range(calls):
        for label, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - t) * 1e3)
    return {label: percentile(ms, 0.5) for label, ms in times.items()}


def library_variants() -> dict:
    from vision_lab.checkpoints import load_checkpoint
    from vision_lab.preprocessing import image_to_tensor
    from vision_lab.saliency import saliency_map

    variants = {}
    for name in CHECKPOINTS:
        ckpt = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors")
        pre = ckpt.preprocessing
        x = pre(image_to_tensor(str(IMAGE), pre.channels, pre.image_size)[None])
        for method in METHODS:
            variants[f"library_{method}_{name}_ms"] = (
                lambda method=method, model=ckpt.model, x=x: saliency_map(method, model, x))
    return variants


def handler_variants(folder: str) -> dict:
    from vision_lab.ui.feature_maps import run_feature_maps
    from vision_lab.ui.pair import run_pair

    settings = SimpleNamespace(checkpoint_dirs=[str(ROOT / "checkpoints")], runs_dir=folder,
                               data_root=folder, examples_dir=str(ROOT / "examples"))
    variants = {}
    for method in METHODS:
        variants[f"handler_{method}_ms"] = (
            lambda method=method: run_feature_maps(settings, "mnist_cnn", str(IMAGE), method=method))
        variants[f"handler_pair_{method}_ms"] = (
            lambda method=method: run_pair(settings, "mnist_cnn", "shapes_cnn", str(IMAGE),
                                           method=method))
    return variants


def ratios(r: dict) -> dict:
    """Each method's time over Grad-CAM's on the same thing (library_occlusion_mnist_cnn_ms over
    library_grad_cam_mnist_cnn_ms, ...)."""
    out = {}
    for key, value in r.items():
        for method in METHODS[1:]:
            if f"_{method}_" in key:
                base = r[key.replace(f"_{method}_", "_grad_cam_")]
                out[key.replace("_ms", "_vs_grad_cam")] = value / base
    return out


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20)
    args = p.parse_args(argv)
    warmup = 3
    if args.quick:
        args.calls, warmup = 2, 1
    t0 = time.perf_counter()
    result = {"machine": machine()}
    with tempfile.TemporaryDirectory() as folder:
        result |= p50s_ms({**library_variants(), **handler_variants(folder)}, warmup, args.calls)
    result |= ratios(result)
    rows = [(k, v, "") for k, v in result.items() if isinstance(v, float)]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("saliency", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
