"""Make the replays that ship with the app: every Compare lesson at its default size on `shapes`.

    python scripts/make_replays.py            # train what is missing or stale, into checkpoints/replays/
    python scripts/make_replays.py --check    # only say which lessons have no current replays

Each run of a lesson (every run label × seed, as the Compare tab trains them) becomes one
`<run key>.json` (serving/run_record.py): its events and final metrics, without a checkpoint (a
lesson's CNN checkpoint is 4.4 MB: 33 of them would be 145 MB). The key includes a hash of the
training code and torch's version, so after a change to either the replays no longer match and the
Compare tab trains again (then keeps that run in the server's own cache); run this script again to
ship current ones. Records no current lesson uses are removed. The pretrained-ResNet18 lesson
needs ImageNet weights and is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "checkpoints" / "replays"


def lesson_keys(name: str, dataset: str = "shapes", size: str = "default"):
    from vision_lab.lessons import build_plan
    from vision_lab.serving.run_key import comparison_runs, run_key

    plan = build_plan(name, dataset, size)
    return plan, [(label, seed, config, run_key(config)) for label, seed, config in comparison_runs(plan)]


def last_internals_only(record: dict) -> dict:
    """Keep the internals (internals.py) of the last epoch only. A lesson's result shows the last
    epoch's (its Inside the network tab and the BatchNorm pointer); every epoch's would make the
    shipped replays five times larger (a learning-curve run has 60 epochs of ~5 KB). A Train run
    replayed from one shows its last epoch inside the network."""
    epochs = [e for e in record["events"] if e.get("event") == "epoch"]
    for event in epochs[:-1]:
        event["internals"] = None
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--check", action="store_true", help="only report lessons without current replays")
    p.add_argument("--lesson", action="append", help="only this lesson (repeatable)")
    args = p.parse_args(argv)
    import torch

    from vision_lab.lessons import LESSONS
    from vision_lab.serving.run_key import code_version
    from vision_lab.serving.run_record import make_record
    from vision_lab.train_config import load_data
    from vision_lab.training import train

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted, missing = set(), []
    names = [n for n in LESSONS if not LESSONS[n].needs_pretrained and (not args.lesson or n in args.lesson)]
    for name in names:
        plan, runs = lesson_keys(name)
        wanted |= {key for *_, key in runs}
        todo = [r for r in runs if not (out / f"{r[3]}.json").is_file()]
        print(f"{name}: {len(runs) - len(todo)}/{len(runs)} runs have current replays", flush=True)
        if not todo:
            continue
        missing.append(name)
        if args.check:
            continue
        data = load_data(plan.runs[0][1])
        with tempfile.TemporaryDirectory() as tmp:
            for label, seed, config, key in todo:
                config.out = str(Path(tmp) / f"{key}.safetensors")
                started = time.perf_counter()
                events = list(train(config, data=data))
                seconds = round(time.perf_counter() - started, 1)
                record = make_record(key, events, data, seconds,
                                     extra={"lesson": name, "label": label, "seed": seed,
                                            "code": code_version(config.device)})
                if record is None:
                    print(f"  {label}, seed {seed}: ended '{events[-1].reason}', not kept", flush=True)
                    continue
                last_internals_only(record)
                (out / f"{key}.json").write_text(json.dumps(record, separators=(",", ":")),
                                                 encoding="utf-8")
                print(f"  {label}, seed {seed}: {events[-1].metrics.get('test_acc', 0):.1%} in "
                      f"{seconds} s", flush=True)
    if not args.check and not args.lesson:
        for stale in out.glob("*.json"):
            if stale.stem not in wanted:
                stale.unlink()
    total = sum(f.stat().st_size for f in out.glob("*.json"))
    print(f"{len(list(out.glob('*.json')))} replays, {total / 1024:,.0f} KB in {out}")
    return 1 if args.check and missing else 0


if __name__ == "__main__":
    sys.exit(main())
