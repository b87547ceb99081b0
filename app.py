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
    p.add_argument("--max-trainings", type=int, default=int(env("VISION_LAB_MAX_TRAININGS") or 1),
                   help="trainings that may run at the same time")
    p.add_argument("--max-waiting", type=int, default=int(env("VISION_LAB_MAX_WAITING") or 8),
                   help="trainings that may wait in line; more are refused with a message")
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
    p.add_argument("--max-upload-mb", type=float, default=_env_float("VISION_LAB_MAX_UPLOAD_MB") or 200,
                   help="largest file a visitor may upload")
    args = p.parse_args(argv)
    if args.public is None:
        env_public = env("VISION_LAB_PUBLIC")
        if env_public not in (None, ""):
            args.public = env_public.strip().lower() in ("1", "true", "yes")
        else:
            args.public = bool(env("SPACE_ID")) or args.share or args.host not in LOOPBACK
    return args


def _warm_up_training(delay: float = 2.0) -> None:
    """Start the process runs fork from (it imports torch) once the first page is out."""
    import threading
    import time

    def later():
        time.sleep(delay)
        from vision_lab.serving.worker import warm_up
        warm_up()

    threading.Thread(target=later, daemon=True).start()


def main(argv=None):
    args = parse_args(argv)
    from starlette.middleware import Middleware

    from vision_lab.ui import CSS, Settings, build_app
    from vision_lab.ui.gradio_internals import calm_queue
    from vision_lab.ui.storage import HidePrivateRuns

    settings = Settings(runs_dir=args.checkpoints, data_root=args.data_root,
                        max_concurrent_trainings=args.max_trainings,
                        max_waiting_trainings=args.max_waiting, on_disconnect=args.on_disconnect,
                        public=args.public, visitor_quota_mb=args.visitor_quota_mb,
                        runs_quota_mb=args.runs_quota_mb, retention_hours=args.retention_hours,
                        max_upload_mb=args.max_upload_mb)
    demo = build_app(settings).queue(default_concurrency_limit=2)
    calm_queue(demo)
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, css=CSS,
        # Checkpoint folders are allowed so that a handler may hand out a run from them, wherever
        # they are; the visitors' private runs inside are never served by path (HidePrivateRuns).
        allowed_paths=list(dict.fromkeys(settings.checkpoint_dirs + [settings.runs_dir])),
        app_kwargs={"middleware": [Middleware(HidePrivateRuns)]},
        max_file_size=f"{settings.max_upload_mb:g}mb", footer_links=["api"],
        prevent_thread_lock=True)
    _warm_up_training()
    demo.block_thread()


if __name__ == "__main__":
    main()
