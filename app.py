"""Vision Lab: `python app.py` serves the app (locally, or as a Hugging Face Space).

Every flag has an environment-variable fallback, so a Space needs no arguments:
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are respected as gradio documents them.
"""
import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _env_float(name):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else None


def parse_args(argv=None):
    env = os.environ.get
    p = argparse.ArgumentParser(description="Vision Lab: see and compare image classifiers.")
    p.add_argument("--host", default=env("VISION_LAB_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to listen on (0.0.0.0 for everyone on the network)")
    p.add_argument("--port", type=int,
                   default=int(env("VISION_LAB_PORT") or env("GRADIO_SERVER_PORT") or 7860))
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    p.add_argument("--checkpoints", default=env("VISION_LAB_CHECKPOINTS") or str(ROOT / "checkpoints"),
                   help="folder where new runs are saved and listed")
    p.add_argument("--data-root", default=env("VISION_LAB_DATA") or None,
                   help="folder for downloaded datasets (default ./data)")
    p.add_argument("--max-trainings", type=int,
                   default=int(env("VISION_LAB_MAX_TRAININGS")) if env("VISION_LAB_MAX_TRAININGS") else None,
                   help="trainings that may run at the same time (default: 1; when public, one per "
                        "two cores' worth of a class: 2 on a machine with 2 or more cores)")
    p.add_argument("--train-threads", type=int,
                   default=int(env("VISION_LAB_TRAIN_THREADS")) if env("VISION_LAB_TRAIN_THREADS") else None,
                   help="threads each training computes with (default: PyTorch's own for one "
                        "training at a time, else the cores shared out between them, at least 1)")
    p.add_argument("--max-waiting", type=int,
                   default=int(env("VISION_LAB_MAX_WAITING")) if env("VISION_LAB_MAX_WAITING") else None,
                   help="trainings that may wait in line; more are refused with a message "
                        "(default: 40 when public, a class's worth; 8 otherwise)")
    p.add_argument("--on-disconnect", choices=["stop", "finish"],
                   default=env("VISION_LAB_ON_DISCONNECT") or "stop",
                   help="what a run does when its page closes (default: stop, keeping finished epochs)")
    public = p.add_mutually_exclusive_group()
    public.add_argument("--public", dest="public", action="store_true", default=None,
                        help="serve as for strangers: folder: paths only inside the data folder, "
                             "storage limits on (default when on a Space, shared or not on localhost)")
    public.add_argument("--private", dest="public", action="store_false",
                        help="serve as for yourself alone, whatever the address")
    p.add_argument("--visitor-quota-mb", type=float, default=_env_float("VISION_LAB_VISITOR_QUOTA_MB"),
                   help="storage for each visitor's runs (0: no limit; default 500 when public)")
    p.add_argument("--runs-quota-mb", type=float, default=_env_float("VISION_LAB_RUNS_QUOTA_MB"),
                   help="storage for all runs (0: no limit; default 10000 when public)")
    p.add_argument("--retention-hours", type=float, default=_env_float("VISION_LAB_RETENTION_HOURS"),
                   help="delete visitors' private runs older than this (0: keep; default 48 when public)")
    p.add_argument("--run-cache-mb", type=float, default=_env_float("VISION_LAB_RUN_CACHE_MB") or 1000,
                   help="storage for finished runs kept to be replayed (0: no limit; default 1000)")
    p.add_argument("--run-cache-days", type=float, default=_env_float("VISION_LAB_RUN_CACHE_DAYS") or 30,
                   help="replay kept runs for this many days (0: no limit; default 30)")
    p.add_argument("--lecture", action="store_true",
                   default=env("VISION_LAB_LECTURE", "").strip().lower() in ("1", "true", "yes"),
                   help="lecture mode for every visitor: larger type and plots, advanced controls "
                        "folded away, lessons in three steps (each visitor can turn it off)")
    p.add_argument("--max-upload-mb", type=float, default=_env_float("VISION_LAB_MAX_UPLOAD_MB") or 200,
                   help="largest file a visitor may upload")
    p.add_argument("--lecturer-key", default=env("VISION_LAB_LECTURER_KEY") or None,
                   help="the key (8 characters or more) that lets a lecturer open, reveal and close "
                        "class boards and collections in the Class tab; on a Space, set the secret "
                        "VISION_LAB_LECTURER_KEY instead (default: no lecturer)")
    p.add_argument("--mcp", action="store_true",
                   default=env("VISION_LAB_MCP", "").strip().lower() in ("1", "true", "yes"),
                   help="also serve the main functions (classify, feature_maps, train, compare, "
                        "augment) as MCP tools for AI agents, at /gradio_api/mcp/ "
                        "(needs: pip install \"mcp>=1.21,<2\")")
    args = p.parse_args(argv)
    if args.public is None:
        env_public = env("VISION_LAB_PUBLIC")
        if env_public not in (None, ""):
            args.public = env_public.strip().lower() in ("1", "true", "yes")
        else:
            args.public = bool(env("SPACE_ID")) or args.share or args.host not in LOOPBACK
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.max_trainings is None:
        # A class on a public server: two runs at once with a thread each finish a class's small
        # runs sooner than one at a time with both threads (serving/worker.py, set_threads).
        args.max_trainings = 2 if args.public and cores >= 2 else 1
    if args.train_threads is None and args.max_trainings > 1:
        args.train_threads = max(1, cores // args.max_trainings)   # one training alone: torch's own
    if args.max_waiting is None:
        args.max_waiting = 40 if args.public else 8
    return args


def max_threads(settings) -> int:
    """Worker threads for gradio's handlers. Each visitor waiting in line or following a run holds
    one (it blocks between updates), and a visitor classifying needs one too: gradio's default of
    40 would leave a class of 40 waiting students none. Blocked threads cost memory, not CPU."""
    return 40 + 2 * (settings.max_waiting_trainings + settings.max_concurrent_trainings) + 100


def _warm_up_training(delay: float = 2.0) -> None:
    """Start the process runs fork from (it imports torch) once the first page is out, and the
    helper that draws the figures (it imports matplotlib)."""
    import threading
    import time

    def later():
        time.sleep(delay)
        from vision_lab.serving import drawing, worker
        worker.warm_up()
        drawing.warm_up()
        keep_startup_objects()   # and what the warm-up imported

    threading.Thread(target=later, daemon=True).start()


def keep_startup_objects() -> None:
    """Take everything the app has built so far out of Python's garbage collector's sight.

    The app holds about a million long-lived objects (torch, gradio, matplotlib, the Blocks); a
    full collection walks all of them: ~0.3 s on the 2-core machine, with every thread of the
    server stopped. Rendering a finished run's figures makes enough garbage to start one every few
    runs, so a visitor classifying meanwhile waited those 0.3 s. Frozen, a full collection looks
    only at what came after (milliseconds). VISION_LAB_GC_FREEZE=0 leaves the collector as it is
    (to measure the difference: benchmarks/classroom.py)."""
    import gc

    if os.environ.get("VISION_LAB_GC_FREEZE", "1") != "0":
        gc.collect()
        gc.freeze()


def main(argv=None):
    args = parse_args(argv)
    if args.mcp:
        from vision_lab.ui.agents import mcp_missing

        missing = mcp_missing()
        if missing:
            raise SystemExit(missing)   # said at once, before the app is built
    interval = os.environ.get("VISION_LAB_SWITCH_INTERVAL_MS")
    if interval:  # a diagnostic (benchmarks/classroom.py): how often threads trade the GIL
        import sys

        sys.setswitchinterval(float(interval) / 1000)
    import torch
    from starlette.middleware import Middleware

    # One thread per request: the server's own torch work is a single image at a time (classify,
    # feature maps), which two threads do no faster, and while a training run and other visitors
    # hold the cores a second thread spins waiting for its partner (measured on 2 cores with a
    # training running: a classify forward pass p95 120 ms with two threads, 12-16 ms with one).
    # Trainings run in child processes of their own (serving/worker.py) and keep every core.
    torch.set_num_threads(1)
    from vision_lab.ui import CSS, Settings, build_app
    from vision_lab.ui.gradio_internals import calm_queue, rarer_analytics
    from vision_lab.ui.language import I18N
    from vision_lab.ui.storage import HidePrivateRuns

    settings = Settings(runs_dir=args.checkpoints, data_root=args.data_root,
                        max_concurrent_trainings=args.max_trainings,
                        max_waiting_trainings=args.max_waiting, on_disconnect=args.on_disconnect,
                        public=args.public, visitor_quota_mb=args.visitor_quota_mb,
                        runs_quota_mb=args.runs_quota_mb, retention_hours=args.retention_hours,
                        max_upload_mb=args.max_upload_mb, lecture=args.lecture,
                        lecturer_key=args.lecturer_key)
    from vision_lab.serving.run_cache import CACHE
    from vision_lab.serving.run_key import source_version

    CACHE.configure(folder=Path(settings.runs_dir) / ".run-cache", max_mb=args.run_cache_mb,
                    max_age_days=args.run_cache_days)
    CACHE.evict()
    from vision_lab.serving import worker

    worker.set_threads(args.train_threads)
    source_version()  # the code's hash, once, before a class asks for it all at once
    demo = build_app(settings).queue(default_concurrency_limit=2)
    limit = os.environ.get("VISION_LAB_INSPECT_CONCURRENCY")
    if limit:  # a diagnostic (benchmarks/classroom.py): how many /classify, /feature_maps at once
        for fn in demo.fns.values():
            if fn.api_name in ("classify", "feature_maps"):
                fn.concurrency_limit = int(limit) if limit != "none" else None
    calm_queue(demo)
    rarer_analytics(demo)
    if args.mcp:
        from vision_lab.ui.agents import expose_tools

        expose_tools(demo)
    demo.launch(
        mcp_server=args.mcp, server_name=args.host, server_port=args.port, share=args.share, css=CSS,
        # Checkpoint folders are allowed so that a handler may hand out a run from them, wherever
        # they are; the visitors' private runs inside are never served by path (HidePrivateRuns).
        allowed_paths=list(dict.fromkeys(settings.checkpoint_dirs + [settings.runs_dir])),
        app_kwargs={"middleware": [Middleware(HidePrivateRuns)]},
        max_file_size=f"{settings.max_upload_mb:g}mb", footer_links=["api"], i18n=I18N,
        max_threads=max_threads(settings),
        prevent_thread_lock=True)
    keep_startup_objects()
    _warm_up_training()
    demo.block_thread()


if __name__ == "__main__":
    main()
