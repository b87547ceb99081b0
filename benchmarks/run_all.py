"""Run every benchmark, one after another, and print a summary of the issue #3 targets.

Each benchmark runs in its own process (so one's imports and threads cannot skew another's) with
--json; `--json` here prints one object: {"machine", "benchmarks": {name: its object}, "summary"}.
"""
from __future__ import annotations

import json
import subprocess
import time

from _common import PYTHON, ROOT, emit, machine, parser

SCRIPTS = ["train_throughput", "floor", "internals", "latency", "memory", "app_overhead", "concurrency"]
APP_SCRIPTS = {"app_overhead", "concurrency"}  # only the app; latency and memory take --no-app for their app parts

# (summary key, benchmark, path in its JSON, target text)
TARGETS = [
    ("cnn_vision_lab_vs_floor", "train_throughput", ("cnn", "vision_lab_vs_floor"), ">= 0.90"),
    ("cnn_vision_lab_vs_floor_course", "train_throughput", ("cnn", "vision_lab_vs_floor_course"), "(course-settings floor)"),
    ("cnn_vision_lab_vs_course", "train_throughput", ("cnn", "vision_lab_vs_course"), ">= 1.45"),
    ("mlp_vision_lab_vs_course", "train_throughput", ("mlp", "vision_lab_vs_course"), ">= 3"),
    ("cnn_floor_raised_by", "train_throughput", ("cnn", "floor_vs_floor_course"), "(fused Adam + channels_last)"),
    ("cnn_internals_on_vs_off", "internals", ("cnn", "on_vs_off"), ">= 0.97 (recording costs <= 3%)"),
    ("cnn_internals_recorder_share", "internals", ("cnn", "recorder_share"), "<= 0.03 (the recorder's own time)"),
    ("live_update_overhead", "app_overhead", ("live_update_overhead",), "<= 0.05"),
    ("app_startup_vs_bare_imports", "app_overhead", ("app_startup_vs_bare_imports",), "<= 1.3"),
    ("library_classify_p50_ms", "latency", ("library_classify_p50_ms",), "<= 20 ms"),
    ("app_classify_p50_ms", "latency", ("app_classify_p50_ms",), "<= 150 ms (gradio_client as it comes)"),
    ("app_classify_one_tls_context_p50_ms", "latency", ("app_classify_one_tls_context_p50_ms",), "<= 150 ms (one TLS context)"),
    ("handler_feature_maps_p50_ms", "latency", ("handler_feature_maps_p50_ms",), "<= 300 ms (the tab's handler)"),
    ("app_feature_maps_one_tls_context_p50_ms", "latency", ("app_feature_maps_one_tls_context_p50_ms",), "<= 300 ms (one TLS context)"),
    ("training_above_idle_app_mb", "memory", ("training_above_idle_app_mb",), "< 1536 MB"),
    ("app_process_cpu_share_while_training", "app_overhead", ("app_process_cpu_share_while_training",), "(share of all cores)"),
    ("classify_p95_ms_during_training", "concurrency", ("training_p95_ms",), "<= 500 ms"),
]


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--no-app", action="store_true", help="skip everything that launches app.py")
    p.add_argument("--only", default=",".join(SCRIPTS))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    results, errors = {}, {}
    for name in args.only.split(","):
        if args.no_app and name in APP_SCRIPTS:
            continue
        cmd = [PYTHON, str(ROOT / "benchmarks" / f"{name}.py"), "--json"]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--no-app"] if args.no_app and name in ("latency", "memory") else []
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            errors[name] = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    summary, rows = {}, []
    for key, bench, path, target in TARGETS:
        value = results.get(bench)
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            summary[key] = value
            rows.append((key, float(value), target))
    rows += [(f"{k} FAILED", v, "") for k, v in errors.items()]
    result = {"machine": machine(), "benchmarks": results, "summary": summary, "errors": errors,
              "seconds": round(time.perf_counter() - t0, 1)}
    emit("run_all", result, rows, args.json)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
