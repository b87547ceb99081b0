"""Where a class's small run spends its time in the app, part by part (issue "The class as one team").

One student's run (shapes, `--images` training images, `--epochs` epochs, the cnn) as the app
does it, its parts timed one after another with nothing else running:
- in the training process: setting up (model, optimizer), the epochs' training steps, each
  epoch's validation pass with the internals recorded during it, the checkpoint written after
  each epoch, the test pass with the kept model's final checkpoint;
- around it: handing the run to its training process (the one the run before finished in, as
  in the app) until its first event, the events coming back, the run's end; then, in the server,
  keeping the run in the run cache, the visitor's copy of its checkpoint, and the six figures of
  its result.

Medians over `--rounds` runs (each its own seed). Prints one line per part: seconds per run and
its share of the run's wall time in the app.

    python benchmarks/small_run.py
    python benchmarks/small_run.py --rounds 5 --json
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from _common import emit, machine, median, parser


def _timed(owner, name: str, spent: dict, label=None) -> None:
    """Wrap owner.name so that its calls add their seconds to spent[label(args) or name]."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            key = label(args) if label else name
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)
    return original


def in_process(config, data) -> dict:
    """The run's parts inside the training loop (this process, warm)."""
    from vision_lab import run_setup, training
    from vision_lab.train_config import BatchEnd, EpochEnd, RunEnd

    spent: dict = {}
    patched = [(run_setup.Run, "save", None), (training, "_validate_and_watch", None),
               (training, "_evaluate", lambda args: f"evaluate_{args[1]}")]
    originals = [_timed(owner, name, spent, label) for owner, name, label in patched]
    try:
        t0 = time.perf_counter()
        first_batch = epochs = end_after = last_epoch_at = None
        for event in training.train(config, data=data):
            now = time.perf_counter()
            if isinstance(event, BatchEnd) and first_batch is None:
                first_batch = now - t0
            elif isinstance(event, EpochEnd):
                last_epoch_at = now
            elif isinstance(event, RunEnd):
                end_after = now - last_epoch_at
                epochs = sum(h["seconds"] for h in event.history)
        wall = time.perf_counter() - t0
    finally:
        for (owner, name, _), original in zip(patched, originals):
            setattr(owner, name, original)
    validation = spent.get("_validate_and_watch", 0.0)
    return {"wall": wall, "epochs": epochs, "training_steps": epochs - validation,
            "validation_pass": spent.get("evaluate_val", 0.0),
            "internals_beyond_validation": validation - spent.get("evaluate_val", 0.0),
            "checkpoint_saves": spent.get("save", 0.0), "test_pass": spent.get("evaluate_test", 0.0),
            "before_first_batch": first_batch, "end_after_last_epoch": end_after}


def in_app(config, data, cache_dir: Path, deliver_to: Path) -> dict:
    """The same run as the app's queue runs it: a forked process, its events read back, then the
    run cache, the visitor's copy and the result's figures."""
    from vision_lab.serving.run_cache import RunCache
    from vision_lab.serving.worker import train_in_process
    from vision_lab.train_config import BatchEnd, RunEnd

    t0 = time.perf_counter()
    run = train_in_process(config, data)
    events, first_event = [], None
    end = None
    while True:
        item = run.events.get()
        if item is None:
            break
        if first_event is None:
            first_event = time.perf_counter() - t0
        events.append(item)
        if isinstance(item, RunEnd):
            end, end_at = item, time.perf_counter()
    exited = time.perf_counter()
    cache = RunCache(cache_dir)
    key = f"bench{time.perf_counter_ns()}"
    replay = cache.put(key, events, end.checkpoint, data, round(exited - t0, 1))
    cached = time.perf_counter()
    cache.deliver(replay, deliver_to, config)
    delivered = time.perf_counter()
    figures = _figures(config, data, events)
    drawn = time.perf_counter()
    return {"process_wall": exited - t0, "first_event_after": first_event,
            "done_after_end": exited - end_at,
            "epochs_in_process": sum(h["seconds"] for h in end.history),
            "batches": sum(isinstance(e, BatchEnd) for e in events),
            "run_cache_put": cached - exited, "deliver_copy": delivered - cached,
            "figures": drawn - delivered}


def _figures(config, data, events) -> None:
    """The Train tab's six result figures, drawn as the app draws them (in its drawing helper)."""
    from vision_lab.ui.train import LiveRun, final_outputs

    live = LiveRun(config, data)
    for event in events:
        live.add(event)
    try:
        final_outputs(live)
    finally:
        live.close()


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--model", default="cnn")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.model, args.rounds = 64, 1, "mlp", 1
    from vision_lab.serving import drawing, worker
    from vision_lab.train_config import TrainConfig, load_data

    worker.warm_up()
    drawing.warm_up()
    base = TrainConfig(dataset="shapes", subset_train=args.images, subset_test=100, model=args.model,
                       epochs=args.epochs)
    data = load_data(base)
    inside, around = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds + 1):   # the first round of each warms up, not counted
            config = dataclasses.replace(base, seed=1000 + i, out=f"{tmp}/in-{i}.safetensors")
            a = in_process(config, data)
            config = dataclasses.replace(config, out=f"{tmp}/app-{i}.safetensors")
            b = in_app(config, data, Path(tmp) / "cache", Path(tmp) / f"mine-{i}.safetensors")
            if i:
                inside.append(a)
                around.append(b)
    part = {k: median([r[k] for r in inside]) for k in inside[0]}
    app = {k: median([r[k] for r in around]) for k in around[0]}
    in_app_total = app["process_wall"] + app["run_cache_put"] + app["deliver_copy"] + app["figures"]
    result = {"machine": machine(), "images": args.images, "epochs": args.epochs, "model": args.model,
              "rounds": args.rounds, "in_process": part, "in_app": app,
              "in_app_total_s": in_app_total, "epochs_share_of_app": part["epochs"] / in_app_total}
    rows = [(f"in process: {k}", float(v), "s") for k, v in part.items()]
    rows += [(f"in the app: {k}", float(v), "s" if k != "batches" else "") for k, v in app.items()]
    rows += [("in the app: whole run", in_app_total, "s"),
             ("epochs' share of the app's run", part["epochs"] / in_app_total, "")]
    emit("small_run", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
