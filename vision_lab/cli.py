"""python -m vision_lab train | evaluate | predict | list

With --json every command prints JSON lines (one object per event or per result). Errors are one
plain sentence on stderr and exit status 1 (2 for bad arguments), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

USER_ERRORS = (ValueError, RuntimeError, OSError, KeyError)


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vision_lab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save a checkpoint")
    t.add_argument("--dataset", default="shapes", help="registry name or folder:PATH (default shapes)")
    t.add_argument("--model", default="cnn")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--optimizer", default="adam", help="sgd, adam, adamw or rmsprop")
    t.add_argument("--scheduler", default="none",
                   help="none, step, multistep, exponential, cosine or plateau")
    t.add_argument("--scheduler-options", type=json.loads, default={},
                   help='JSON, e.g. \'{"step_size": 2, "gamma": 0.5}\'')
    t.add_argument("--augment", default="none", help="a preset name or a JSON spec list")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--l1", type=float, default=0.0)
    t.add_argument("--model-options", type=json.loads, default={},
                   help='JSON, e.g. \'{"hidden_sizes": [8, 8]}\'')
    t.add_argument("--pretrained", action="store_true")
    t.add_argument("--freeze-epochs", type=int, default=0)
    t.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE")
    t.add_argument("--permute-pixels", action="store_true")
    t.add_argument("--image-size", type=_positive_int, default=None)
    t.add_argument("--subset-train", type=_positive_int, default=None)
    t.add_argument("--subset-test", type=_positive_int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--data-root", default=None)
    t.add_argument("--out", default=None, help="checkpoint path (default checkpoints/runs/…)")
    t.add_argument("--json", action="store_true")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset's test split")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", required=True)
    e.add_argument("--data-root", default=None)
    e.add_argument("--subset-test", type=_positive_int, default=None)
    e.add_argument("--json", action="store_true")

    pr = sub.add_parser("predict", help="classify image files with a checkpoint")
    pr.add_argument("checkpoint")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--top-k", type=_positive_int, default=5)
    pr.add_argument("--json", action="store_true")

    ls = sub.add_parser("list", help="list models, datasets, presets and checkpoints")
    ls.add_argument("--json", action="store_true")
    return p


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# ---- train --------------------------------------------------------------------------------------

def _config_from_args(args):
    from .training import TrainConfig

    return TrainConfig(**{
        "dataset": args.dataset, "model": args.model, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
        "scheduler": args.scheduler, "scheduler_options": args.scheduler_options,
        "weight_decay": args.weight_decay, "l1": args.l1, "model_options": args.model_options,
        "pretrained": args.pretrained, "freeze_epochs": args.freeze_epochs,
        "early_stopping_patience": args.early_stopping, "permute_pixels": args.permute_pixels,
        "image_size": args.image_size, "subset_train": args.subset_train,
        "subset_test": args.subset_test, "seed": args.seed, "device": args.device,
        "data_root": args.data_root, "out": args.out,
        "augment": json.loads(args.augment) if args.augment.lstrip().startswith("[") else args.augment,
    })


class ProgressBar:
    """One status line on a terminal: progress, loss, accuracy, images/s and ETA."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.last_draw, self.acc = stream, 0.0, None
        self.t0 = time.perf_counter()

    def batch(self, ev) -> None:
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and ev.step != ev.total_steps:
            return
        self.last_draw = now
        frac = ev.step / ev.total_steps
        eta = (now - self.t0) / frac * (1 - frac)
        bar = "#" * int(frac * 24)
        acc = f" test acc {self.acc:.1%}" if self.acc is not None else ""
        self.stream.write(f"\r[{bar:<24}] {frac:4.0%} epoch {ev.epoch} loss {ev.loss:.3f}{acc} "
                          f"{ev.images_per_sec:,.0f} img/s ETA {eta:4.0f}s ")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(100) + "\n")
        self.stream.flush()


def cmd_train(args) -> int:
    from .malloc import keep_freed_memory
    from .training import BatchEnd, EpochEnd, RunEnd, Status, event_to_dict, train

    keep_freed_memory()  # this process exists to train (see malloc.py)
    config = _config_from_args(args)
    stop = threading.Event()
    bar = None if args.json else ProgressBar()
    end = None
    events = train(config, stop=stop)
    try:
        for ev in events:
            if args.json:
                d = event_to_dict(ev)
                if isinstance(ev, RunEnd):
                    d = {k: d[k] for k in ("event", "reason", "message", "best_epoch", "checkpoint",
                                           "metrics", "history")}
                    d["metrics"].pop("most_confused", None)
                _emit(d)
            elif isinstance(ev, BatchEnd):
                bar.batch(ev)
            elif isinstance(ev, EpochEnd):
                bar.acc = ev.test_acc
                bar.line(f"epoch {ev.epoch}: train loss {ev.train_loss:.4f} acc {ev.train_acc:.2%} | "
                         f"test loss {ev.test_loss:.4f} acc {ev.test_acc:.2%} | lr {ev.lr:.2g} | "
                         f"{ev.seconds:.1f}s")
            elif isinstance(ev, Status):
                bar.line(ev.message)
            if isinstance(ev, RunEnd):
                end = ev
    except KeyboardInterrupt:
        # Ctrl-C: ask the loop to stop at the next batch, and let it report what it kept.
        stop.set()
        for ev in events:
            if isinstance(ev, RunEnd):
                end = ev
                if args.json:
                    _emit({"event": "done", "reason": ev.reason, "message": ev.message,
                           "checkpoint": ev.checkpoint})
    if end and not args.json:
        bar.line(end.message)
        if end.checkpoint:
            bar.line(f"checkpoint: {end.checkpoint}")
    return 0 if end and end.reason in ("completed", "early_stopped", "stopped") else 1


# ---- evaluate / predict / list ------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    from .checkpoints import load_checkpoint
    from .datasets import load_dataset
    from .training import evaluate

    ckpt = load_checkpoint(args.checkpoint)
    data = load_dataset(args.dataset, data_root=args.data_root, subset_test=args.subset_test,
                        **({"image_size": ckpt.metadata["image_size"]}
                           if args.dataset.startswith("folder:") else {}))
    if len(data.classes) != len(ckpt.classes):
        raise ValueError(f"{Path(args.checkpoint).name} predicts {len(ckpt.classes)} classes but "
                         f"{args.dataset} has {len(data.classes)}.")
    if data.channels != ckpt.preprocessing.channels:
        raise ValueError(f"{Path(args.checkpoint).name} expects {ckpt.preprocessing.channels}-channel "
                         f"images but {args.dataset} has {data.channels}-channel images.")
    r = evaluate(ckpt.model, data.test_images, data.test_labels, ckpt.preprocessing, len(ckpt.classes))
    if args.json:
        _emit(r.to_dict())
    else:
        print(f"test loss {r.loss:.4f}, test accuracy {r.acc:.2%} on {len(data.test_images):,} images")
        for name, acc in zip(ckpt.classes, r.per_class_acc):
            print(f"  {name:<20} {acc:.2%}")
    return 0


def cmd_predict(args) -> int:
    from .checkpoints import load_checkpoint
    from .inspect import predict
    from .preprocessing import ImageError, image_to_tensor

    ckpt = load_checkpoint(args.checkpoint)
    prep = ckpt.preprocessing
    failed = 0
    for path in args.images:
        try:
            x = image_to_tensor(path, prep.channels, prep.image_size)
        except ImageError as e:
            print(f"{path}: {e}", file=sys.stderr)
            failed += 1
            continue
        top = predict(ckpt.model, prep(x.unsqueeze(0)), ckpt.classes, top_k=args.top_k)[0]
        if args.json:
            _emit({"image": path, "top": [{"label": lbl, "prob": p} for lbl, p in top]})
        else:
            print(path + ": " + ", ".join(f"{lbl} {p:.1%}" for lbl, p in top))
    return 1 if failed else 0


def cmd_list(args) -> int:
    from .checkpoints import list_checkpoints
    from .datasets import list_datasets
    from .models import list_models
    from .transforms import list_presets

    ckpts = list_checkpoints()
    if args.json:
        _emit({"models": list_models(), "datasets": list_datasets() + ["folder:PATH"],
               "presets": list_presets(),
               "checkpoints": [{"path": str(c.path), "model": c.model, "dataset": c.dataset,
                                "test_acc": c.test_acc, "created": c.created} for c in ckpts]})
        return 0
    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()) + ", folder:PATH")
    print("presets:  " + ", ".join(list_presets()))
    print("checkpoints:")
    for c in ckpts:
        acc = f"{c.test_acc:.2%}" if c.test_acc is not None else "-"
        print(f"  {str(c.path):<50} {c.model:<9} {c.dataset:<16} test acc {acc:>7}  {c.created}")
    if not ckpts:
        print("  (none yet: python -m vision_lab train)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)  # argparse itself reports bad flags (exit 2)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "predict":
            return cmd_predict(args)
        return cmd_list(args)
    except USER_ERRORS as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 1
