"""Vision Lab: `python app.py` serves the app (locally, or as a Hugging Face Space).

Every flag has an environment-variable fallback, so a Space needs no arguments:
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are respected as gradio documents them.
"""
import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def parse_args(argv=None):
    env = os.environ.get
    p = argparse.ArgumentParser(description="Vision Lab: see and compare image classifiers.")
    p.add_argument("--host", default=env("VISION_LAB_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to listen on (0.0.0.0 for everyone on the network)")
    p.add_argument("--port", type=int,
                   default=int(env("VISION_LAB_PORT") or env("GRADIO_SERVER_PORT") or 7860))
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    p.add_argument("--checkpoints", default=env("VISION_LAB_CHECKPOINTS") or str(ROOT / "checkpoints"),
                   help="folder where new runs are saved (under runs/) and listed")
    p.add_argument("--data-root", default=env("VISION_LAB_DATA") or None,
                   help="folder for downloaded datasets (default ./data)")
    p.add_argument("--max-trainings", type=int, default=int(env("VISION_LAB_MAX_TRAININGS") or 1),
                   help="trainings that may run at the same time; more wait in a queue")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from vision_lab.ui import CSS, Settings, build_app

    settings = Settings(runs_dir=args.checkpoints, data_root=args.data_root,
                        max_concurrent_trainings=args.max_trainings)
    demo = build_app(settings)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, share=args.share, css=CSS,
        allowed_paths=list(dict.fromkeys(settings.checkpoint_dirs + [settings.runs_dir])),
        footer_links=["api"])


if __name__ == "__main__":
    main()
