"""The benchmark scripts run (tiny sizes) and print one JSON object with their figures.

No timing is asserted here: these machines are noisy. The figures themselves come from running
the scripts at full size (see README, Performance).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str) -> dict:
    r = subprocess.run([sys.executable, f"benchmarks/{name}.py", "--quick", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, r.stdout
    result = json.loads(lines[-1])
    assert result["benchmark"] == name and result["machine"]["cpus"] >= 1
    return result


@pytest.mark.parametrize("name, keys", [
    ("train_throughput", ["vision_lab_vs_floor", "vision_lab_vs_course", "floor_images_per_sec"]),
    ("floor", []),
])
def test_training_benchmarks_emit_their_ratios(name, keys):
    result = run_benchmark(name)
    if keys:
        per_model = [v for v in result.values() if isinstance(v, dict) and "vision_lab_vs_floor" in v]
        assert per_model, result
        for figures in per_model:
            for key in keys:
                assert figures[key] > 0


def test_latency_benchmark():
    ms = run_benchmark("latency")["ms"]
    for key in ("classify_library_p50", "classify_client_p50", "feature_maps_library_p50"):
        assert ms[key] > 0


def test_memory_benchmark():
    result = run_benchmark("memory")
    assert result["idle_app_rss_mb"] > 100 and result["training_peak_rss_mb"] > 100


def test_app_overhead_benchmark():
    result = run_benchmark("app_overhead")
    assert result["app_first_page_s"] > 0 and result["bare_import_s"] > 0
    assert result["app_train_epoch_s"] > 0 and result["cli_train_epoch_s"] > 0
