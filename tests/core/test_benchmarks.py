"""The benchmarks run and print the figures they promise; the fast augmentation is the course's.

No timings are asserted here: a shared CI machine is too noisy for that. benchmarks/ measures.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as nnf
from torchvision import transforms as course_transforms
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from vision_lab.batch_augment import BatchAugmenter
from vision_lab.transforms import preset

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(script, *args, timeout=240):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_train_throughput_benchmark_runs():
    r = run_benchmark("train_throughput.py")
    assert r["benchmark"] == "train_throughput" and r["machine"]["cpus"] >= 1
    for model in ("cnn", "mlp"):
        for key in ("course_w0_images_per_sec", "course_w2_images_per_sec", "course_best_images_per_sec",
                    "floor_course_images_per_sec", "floor_images_per_sec", "vision_lab_images_per_sec",
                    "vision_lab_vs_floor", "vision_lab_vs_course", "floor_vs_floor_course"):
            assert r[model][key] > 0, (model, key)
    assert r["batches"] > 0 and r["course_batches"] > 0


def test_internals_benchmark_runs():
    r = run_benchmark("internals.py", "--models", "cnn")
    assert r["benchmark"] == "internals" and r["target_cost"] == 0.03
    cnn = r["cnn"]
    assert cnn["off_images_per_sec"] > 0 and cnn["on_images_per_sec"] > 0
    assert cnn["on_vs_off"] > 0 and 0 < cnn["recorder_share"] < 1
    assert len(cnn["round_ratios"]) == r["rounds"] == 1


def test_floor_benchmark_runs():
    r = run_benchmark("floor.py")
    for key in ("default_images_per_sec", "threads_1_vs_default", "fused_adam_vs_default",
                "channels_last_vs_default", "channels_last_fused_adam_vs_default",
                "eval_no_grad_vs_inference_mode", "eval_inference_mode_channels_last_vs_inference_mode"):
        assert r["cnn"][key] > 0, key
    assert r["mlp"]["fused_adam_vs_default"] > 0
    # torch.compile is compared with what train() uses (--quick skips compiling: it takes seconds).
    assert r["cnn"]["vision_lab_variant"] == "channels_last_fused_adam"
    assert r["mlp"]["vision_lab_variant"] == "fused_adam"
    assert "compiled_images_per_sec" not in r["cnn"]


def test_floor_benchmark_compares_allocators_in_child_processes():
    r = run_benchmark("floor.py", "--models", "mlp", "--allocator")
    assert r["mlp"]["malloc_default_images_per_sec"] > 0 and r["mlp"]["malloc_keep_freed_images_per_sec"] > 0
    assert r["mlp"]["malloc_keep_freed_vs_default"] > 0
    assert r["mlp"]["malloc_keep_freed_page_faults_per_step"] >= 0


def test_latency_benchmark_library_part_runs():
    r = run_benchmark("latency.py", "--no-app")
    for key in ("library_classify_p50_ms", "library_feature_maps_p50_ms"):
        assert r[key] > 0


def test_saliency_benchmark_runs():
    r = run_benchmark("saliency.py")
    for method in ("grad_cam", "grad_cam_plus_plus", "occlusion", "input_gradient"):
        assert r[f"library_{method}_shapes_cnn_ms"] > 0 and r[f"handler_pair_{method}_ms"] > 0
    assert r["library_occlusion_shapes_cnn_vs_grad_cam"] > 0


def test_memory_benchmark_training_part_runs():
    r = run_benchmark("memory.py", "--no-app")
    assert r["training_child_peak_rss_mb"] >= r["training_child_peak_private_mb"] > 0
    assert r["training_steps"] == 8 and r["training_reason"] == "completed"  # 512 images, batch 64
    assert r["training_above_idle_app_mb"] == pytest.approx(
        r["training_dataset_mb"] + r["training_child_peak_private_mb"])


@pytest.mark.slow
def test_app_benchmarks_run():
    r = run_benchmark("app_overhead.py")
    for key in ("bare_imports_seconds", "app_first_page_seconds", "app_startup_vs_bare_imports",
                "cli_images_per_sec", "app_images_per_sec", "live_update_overhead"):
        assert key in r and r[key] == r[key], key  # present and not NaN
    assert 0 <= r["app_process_cpu_share_while_training"] < 1
    r = run_benchmark("latency.py")
    assert r["app_classify_p50_ms"] > 0
    r = run_benchmark("concurrency.py")
    assert r["training_calls"] > 0 and r["training_p95_ms"] >= r["training_p50_ms"] > 0
    assert r["second_training_waited_in_line"] is True, r["second_training_status"]


@pytest.mark.slow
def test_run_all_collects_every_benchmark():
    r = run_benchmark("run_all.py", "--no-app", timeout=400)
    assert {"train_throughput", "floor", "latency", "memory"} <= set(r["benchmarks"])
    assert "cnn_vision_lab_vs_floor" in r["summary"]


# ---- the fast pipeline is the course's pipeline, statistically ---------------------------------

def smooth_images(n, seed=0):
    """Smooth RGB uint8 images kept away from 0, so zeros in the output come from the fills."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 5, 5, generator=gen) * 215 + 20
    return nnf.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False).round().to(torch.uint8)


def course_pipeline():
    """The course's CIFAR-10 augmentation, per PIL image."""
    return course_transforms.Compose([
        course_transforms.RandomCrop(32, padding=4),
        course_transforms.RandomHorizontalFlip(),
        course_transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
        course_transforms.RandomRotation(15),
    ])


def statistics(batch):
    """Per channel: mean, std, fraction of fill zeros, and the mean of per-image stds (contrast)."""
    x = batch.float()
    return {"mean": x.mean((0, 2, 3)), "std": x.std((0, 2, 3)), "zeros": (x == 0).float().mean((0, 2, 3)),
            "image_std": x.std((2, 3)).mean(0)}


def course_statistics(images, repeats):
    torch.manual_seed(0)
    transform = course_pipeline()
    return statistics(torch.stack([pil_to_tensor(transform(to_pil_image(img)))
                                   for _ in range(repeats) for img in images]))


def batch_statistics(spec, images, repeats):
    augment, gen = BatchAugmenter(spec, 32), torch.Generator().manual_seed(1)
    return statistics(torch.cat([augment(images, gen) for _ in range(repeats)]))


# Pixel values are 0..255. Seen: means and stds agree within 0.4, fill fractions within 0.003.
TOLERANCE = {"mean": 1.5, "std": 1.5, "zeros": 0.01, "image_std": 1.5}


def differences(a, b):
    return {k: (a[k] - b[k]).abs().max().item() for k in TOLERANCE}


@pytest.fixture(scope="module")
def course_stats():
    return course_statistics(smooth_images(256), repeats=4)


def test_batch_augmenter_standard_matches_the_course_pil_pipeline(course_stats):
    diff = differences(batch_statistics(preset("standard", 32), smooth_images(256), repeats=4), course_stats)
    assert all(diff[k] <= TOLERANCE[k] for k in TOLERANCE), diff


@pytest.mark.parametrize("spec", [
    preset("light", 32),  # no jitter, no rotation
    [s if s["op"] != "RandomRotation" else {"op": "RandomRotation", "degrees": 30} for s in preset("standard", 32)],
    [s if s["op"] != "ColorJitter" else {**s, "contrast": 0.5} for s in preset("standard", 32)],
], ids=["light", "rotation-30", "contrast-0.5"])
def test_the_comparison_notices_a_different_pipeline(course_stats, spec):
    diff = differences(batch_statistics(spec, smooth_images(256), repeats=4), course_stats)
    assert any(diff[k] > TOLERANCE[k] for k in TOLERANCE), diff


def test_small_run_benchmark_times_each_part_of_a_run_in_the_app():
    r = run_benchmark("small_run.py")
    inside, app = r["in_process"], r["in_app"]
    for key in ("epochs", "training_steps", "validation_pass", "checkpoint_saves", "test_pass"):
        assert inside[key] > 0, key
    assert inside["epochs"] <= inside["wall"] and app["epochs_in_process"] <= app["process_wall"]
    for key in ("run_cache_put", "deliver_copy", "figures"):
        assert app[key] > 0, key
    assert 0 < r["epochs_share_of_app"] < 1


def test_stacked_runs_benchmark_compares_vmap_with_runs_one_after_another():
    r = run_benchmark("stacked_runs.py")
    assert r["one_after_another_images_per_sec"] > 0 and r["stacked_images_per_sec"] > 0
    assert r["stacked_vs_one_after_another"] > 0 and r["runs"] == 2
