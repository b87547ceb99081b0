"""python -m vision_lab train | lr-find | evaluate | predict | export | list | class

With --json every command prints JSON lines (one object per event or per result). Errors are one
plain sentence on stderr and exit status 1 (2 for bad arguments), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from .command_line import add_train_flags, config_from_args, positive_int

USER_ERRORS = (ValueError, RuntimeError, OSError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vision_lab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save a checkpoint")
    add_train_flags(t)
    t.add_argument("--json", action="store_true")

    lf = sub.add_parser("lr-find", help="learning-rate range test: train a few steps at growing lrs "
                                        "and suggest one (nothing is saved)")
    add_train_flags(lf)
    lf.add_argument("--start-lr", type=float, default=1e-6, help="the smallest lr tried (default 1e-6)")
    lf.add_argument("--end-lr", type=float, default=1.0, help="the largest lr tried (default 1)")
    lf.add_argument("--steps", type=int, default=100,
                    help="training steps, the lr growing by the same factor each (default 100)")
    lf.add_argument("--plot", metavar="PNG", default=None, help="save the loss-against-lr figure here")
    lf.add_argument("--json", action="store_true")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset's test split")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", required=True)
    e.add_argument("--data-root", default=None)
    e.add_argument("--subset-test", type=positive_int, default=None)
    e.add_argument("--json", action="store_true")

    pr = sub.add_parser("predict", help="classify image files with a checkpoint")
    pr.add_argument("checkpoint")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--top-k", type=positive_int, default=5)
    pr.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="export a checkpoint to ONNX, to run it without PyTorch")
    ex.add_argument("checkpoint")
    ex.add_argument("--onnx", metavar="OUT", required=True, help="the .onnx file to write")
    ex.add_argument("--opset", type=positive_int, default=17, help="ONNX opset version (default 17)")
    ex.add_argument("--pixels", choices=("uint8", "float"), default="uint8",
                    help="input of the file: uint8 0-255 pixels (default) or float32 in [0, 1]")
    ex.add_argument("--no-preprocessing", dest="include_preprocessing", action="store_false",
                    help="leave normalisation out of the graph: the input is already normalised")
    ex.add_argument("--json", action="store_true")

    ls = sub.add_parser("list", help="list models, datasets, presets and checkpoints")
    ls.add_argument("--json", action="store_true")

    c = sub.add_parser("class", help="what a class made in the app's Class tab: list or export its "
                                     "class boards and class collections")
    class_sub = c.add_subparsers(dest="class_command", required=True)
    for name, what in (("list", "list the class boards and collections"),
                       ("export", "write each board as CSV and each collection as a zip of class folders")):
        cc = class_sub.add_parser(name, help=what)
        cc.add_argument("--runs-dir", default=None,
                        help="the app's runs folder, its --checkpoints (default: $VISION_LAB_CHECKPOINTS, "
                             "else ./checkpoints); the class database is in its .class folder")
        if name == "export":
            cc.add_argument("--out", required=True, help="the folder to write the files into")
        cc.add_argument("--json", action="store_true")
    return p


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# ---- train --------------------------------------------------------------------------------------

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
        acc = f" val acc {self.acc:.1%}" if self.acc is not None else ""
        self.stream.write(f"\r[{bar:<24}] {frac:4.0%} epoch {ev.epoch} loss {ev.loss:.3f}{acc} "
                          f"{ev.images_per_sec:,.0f} img/s ETA {eta:4.0f}s ")
        self.stream.flush()

    def epoch(self, ev) -> None:
        self.acc = ev.val_acc
        val = (f"val loss {ev.val_loss:.4f} acc {ev.val_acc:.2%}" if ev.val_loss is not None
               else "no validation set")
        self.line(f"epoch {ev.epoch}: train loss {ev.train_loss:.4f} acc {ev.train_acc:.2%} | {val} | "
                  f"lr {ev.lr:.2g} | {ev.seconds:.1f}s")

    def line(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(100) + "\n")
        self.stream.flush()


def _stop_on_ctrl_c(stop: threading.Event, bar: "ProgressBar | None") -> None:
    """The first Ctrl-C asks the run to stop after the current batch (it keeps its last finished
    epoch and says so); a second one quits at once. A KeyboardInterrupt raised inside the training
    generator would end it with no message instead."""
    def first_press(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if bar is not None:
            bar.line("Stopping after this batch … (Ctrl-C again to quit at once)")

    signal.signal(signal.SIGINT, first_press)


def _stop_every_process_on_ctrl_c(stop: threading.Event, bar: "ProgressBar | None") -> None:
    """Ctrl-C in a distributed run: torchrun passes the terminal's Ctrl-C on to every process,
    which has already had it from the terminal, so each press arrives twice at once. Any of them
    asks the run to stop after the current batch, and since the processes add up their Stop at
    every step, all of them stop at the same one; a press more than two seconds after the first
    quits at once."""
    first = []

    def press(signum, frame):
        if first and time.monotonic() - first[0] > 2:
            raise KeyboardInterrupt
        if not first:
            first.append(time.monotonic())
            stop.set()
            if bar is not None:
                bar.line("Stopping every process after this batch … (Ctrl-C again to quit at once)")

    signal.signal(signal.SIGINT, press)


def _done_line(d: dict) -> dict:
    """The `done` event as documented (the app's extras, like most_confused, left out)."""
    d = {k: d[k] for k in ("event", "reason", "message", "best_epoch", "checkpoint", "metrics", "history")}
    d["metrics"] = {k: v for k, v in d["metrics"].items() if k != "most_confused"}
    return d


def cmd_train(args) -> int:
    from . import distributed
    from .serving.malloc import keep_freed_memory
    from .run_setup import pick_device

    keep_freed_memory()  # this process exists to train (see serving/malloc.py)
    config = config_from_args(args)
    if not distributed.launched_by_torchrun():
        return _train(config, args.json)
    # Started by torchrun: one process of a DistributedDataParallel run (distributed.py). Every
    # process trains; rank 0 alone prints the events and writes the checkpoint.
    config.validate()  # a wrong option is one sentence, before any process waits for the others
    group = distributed.start(use_cuda=pick_device(config.device).type == "cuda")
    cleanly = False
    try:
        code = _train(config, args.json, group)
        cleanly = True
        return code
    finally:
        distributed.finish(cleanly)


def _train(config, as_json: bool, group=None) -> int:
    from .train_config import BatchEnd, EpochEnd, RunEnd, Status, event_to_dict
    from .training import train

    stop = threading.Event()
    quiet = group is not None and not group.is_main
    bar = None if as_json or quiet else ProgressBar()
    if group is None:
        _stop_on_ctrl_c(stop, bar)
    else:
        _stop_every_process_on_ctrl_c(stop, bar)
    end = None
    for ev in train(config, stop=stop):
        if isinstance(ev, RunEnd):
            end = ev
        if quiet:
            continue
        if as_json:
            _emit(_done_line(event_to_dict(ev)) if isinstance(ev, RunEnd) else event_to_dict(ev))
        elif isinstance(ev, BatchEnd):
            bar.batch(ev)
        elif isinstance(ev, EpochEnd):
            bar.epoch(ev)
        elif isinstance(ev, Status):
            bar.line(ev.message)
    if bar is not None:
        bar.line(end.message)
        if end.metrics.get("test_acc") is not None:
            bar.line(f"test accuracy {end.metrics['test_acc']:.2%} (test loss "
                     f"{end.metrics['test_loss']:.4f}), measured once on the kept model")
        if end.checkpoint:
            bar.line(f"checkpoint: {end.checkpoint}")
    # 130 is what shells report for a program ended by Ctrl-C. Under torchrun a stop that ended
    # cleanly exits 0 (the done event says "stopped"): torchrun takes any other code for a crash.
    stopped = 130 if group is None else 0
    return {"completed": 0, "early_stopped": 0, "stopped": stopped}.get(end.reason, 1)


# ---- lr-find ------------------------------------------------------------------------------------

def cmd_lr_find(args) -> int:
    from .lr_finder import SMOOTH, check_range, find_lr

    config = config_from_args(args)
    check_range(args.start_lr, args.end_lr, args.steps, SMOOTH)  # before saying what it sweeps
    stop = threading.Event()
    _stop_on_ctrl_c(stop, None)  # Ctrl-C ends the sweep early; what it measured is still shown
    if not args.json:
        print(f"Sweeping the lr from {args.start_lr:g} to {args.end_lr:g} over {args.steps} steps "
              f"of {config.model} on {config.dataset} (nothing is saved) …", file=sys.stderr)
    result = find_lr(config, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps, stop=stop)
    if args.plot:
        from .curve_plots import lr_finder_figure
        from .plot_style import save_png

        save_png(lr_finder_figure(result), args.plot)
    if args.json:
        _emit(result.to_dict())
        return 0
    _print_suggestions(result)
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _print_suggestions(result) -> None:
    from .i18n import text

    if result.steepest is None:
        print(text("lr_finder.no_suggestion", steps=len(result.lrs)))
    else:
        print(text("lr_finder.steepest", lr=result.steepest))
        print(text("lr_finder.min_div_10", lr=result.min_div_10))
        print(text("lr_finder.caveat"))
    if result.diverged_at is not None:
        print(text("lr_finder.diverged", lr=result.diverged_at))


# ---- export -------------------------------------------------------------------------------------

def cmd_export(args) -> int:
    from .export import OnnxUnavailable, export_onnx

    try:
        out = export_onnx(args.checkpoint, args.onnx, opset=args.opset,
                          include_preprocessing=args.include_preprocessing, pixels=args.pixels)
    except OnnxUnavailable as missing:  # an optional package: one sentence with the pip command
        print(f"{_error_prefix()}: {missing}", file=sys.stderr)
        return 1
    import onnx  # present: export_onnx has just used it

    described = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    if args.json:
        _emit({"onnx": str(out), "input": described["input"]})
    else:
        print(f"wrote {out}\ninput: {described['input']}")
    return 0


# ---- evaluate / predict / list ------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    from .checkpoints import load_checkpoint
    from .datasets import load_dataset
    from .evaluation import evaluate

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
    # The run's own test-time augmentation (speedrun's flips), so the figure matches its test.
    tta = ckpt.metadata.get("config", {}).get("tta", "none")
    r = evaluate(ckpt.model, data.test_images, data.test_labels, ckpt.preprocessing, len(ckpt.classes),
                 tta=tta)
    if args.json:
        _emit(r.to_dict())
    else:
        views = "" if tta == "none" else f" (test-time augmentation: {tta}, as the run was tested)"
        print(f"test loss {r.loss:.4f}, test accuracy {r.acc:.2%} on {len(data.test_images):,} images{views}")
        for name, acc in zip(ckpt.classes, r.per_class_acc):
            print(f"  {name:<20} {acc:.2%}")
    return 0


def cmd_predict(args) -> int:
    from .checkpoints import load_checkpoint
    from .network_view import predict
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


# ---- class -------------------------------------------------------------------------------------

def cmd_class(args) -> int:
    db = _existing_class_db(args.runs_dir)
    out = None if args.class_command == "list" else Path(args.out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = [_board_row(db, board, out) for board in db.boards()]
    rows += [_collection_row(db, collection, out) for collection in db.collections()]
    for row in rows:
        if args.json:
            _emit(row)
            continue
        kind = "board" if "board" in row else "collection"
        counted = (_count(row["entries"], "entry", "entries") if kind == "board"
                   else f"{_count(row['drawings'], 'drawing', 'drawings')} in {len(row['classes'])} classes")
        state = row["state"] + (", revealed" if row.get("revealed") and row["state"] == "closed" else "")
        written = row.get("csv") or row.get("zip")
        print(f"{kind} {row[kind]} \"{row['name']}\" ({state}, {counted})"
              + (f": {written}" if written else ""))
    if not rows and not args.json:
        print("no class board or collection yet")
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _existing_class_db(runs_dir):
    """The class database of a runs folder; never a new empty one (a mistyped folder says so)."""
    from .checkpoints import default_checkpoint_dir
    from .serving.class_db import DB_NAME, FOLDER, ClassDB

    folder = Path(runs_dir or default_checkpoint_dir()) / FOLDER
    if not (folder / DB_NAME).is_file():
        raise ValueError(f"there is no class database in {folder}: the app makes one there when a "
                         "lecturer opens a class board or collection (--runs-dir is the app's --checkpoints)")
    return ClassDB(folder)   # a damaged file: ClassError (a ValueError) says so in one sentence


def _board_row(db, board, out) -> dict:
    entries = db.entries(board.id)
    row = {"board": board.id, "name": board.name, "dataset": board.dataset, "state": board.state,
           "revealed": board.revealed is not None, "entries": len(entries)}
    if out is not None:
        from .class_board import entries_csv

        path = out / f"board-{board.id}.csv"
        path.write_text(entries_csv(board, entries), encoding="utf-8")
        row["csv"] = str(path)
    return row


def _collection_row(db, collection, out) -> dict:
    row = {"collection": collection.id, "name": collection.name, "state": collection.state,
           "classes": collection.classes, "drawings": db.counts(collection.id).total}
    if out is not None:
        from .class_drawings import write_zip

        row["zip"] = str(write_zip(db, collection, out / f"collection-{collection.id}.zip"))
    return row


def _error_prefix() -> str:
    """"error", or in a distributed run's other processes "error (rank N)": each may fail alone."""
    import os

    rank = os.environ.get("RANK", "0") if "LOCAL_RANK" in os.environ else "0"
    return "error" if rank == "0" else f"error (rank {rank})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)  # argparse itself reports bad flags (exit 2)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "lr-find":
            return cmd_lr_find(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "class":
            return cmd_class(args)
        return cmd_list(args)
    except USER_ERRORS as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"{_error_prefix()}: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one outside it
        print("\ninterrupted", file=sys.stderr)
        return 130
