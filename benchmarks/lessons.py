"""Does every lesson's claim hold? Train each Compare lesson at a size and print its verdict.

For each lesson: the claim, its margin ± the seed-to-seed spread (points), whether it held, and
the seconds the lesson took; a lesson with several claims (regularization, early stopping) lists
each under "claims". Exits non-zero when a claim does not hold, so a lesson whose text
says more than its numbers show is caught. Lessons that need something missing here (the ImageNet
weights) are reported as skipped.

    python benchmarks/lessons.py                                   # shapes, default size
    python benchmarks/lessons.py --dataset mnist --data-root ../shared/data
    python benchmarks/lessons.py --lesson "MLP vs CNN" --size quick
"""
from __future__ import annotations

import json
import sys
import tempfile

from _common import machine, parser


def main(argv=None) -> int:
    from vision_lab.lessons import LESSONS, SIZES, run_lesson
    from vision_lab.models import PretrainedWeightsUnavailable

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--data-root", default=None)
    p.add_argument("--size", choices=list(SIZES), default="default")
    p.add_argument("--lesson", action="append", choices=list(LESSONS),
                   help="only this lesson (repeatable; default: all)")
    args = p.parse_args(argv)
    size = "quick" if args.quick else args.size
    results, failed = [], []
    with tempfile.TemporaryDirectory(prefix="vision-lab-lessons-") as out_dir:
        for name in args.lesson or list(LESSONS):
            try:
                result = run_lesson(name, args.dataset, size, args.data_root, out_dir=out_dir)
            except PretrainedWeightsUnavailable as error:
                results.append({"lesson": name, "skipped": str(error)})
                print(f"-- {name}: skipped: {error}", flush=True)
                continue
            v = result.verdict
            entry = {"lesson": name, "seconds": round(result.seconds, 1), "rows": result.rows,
                     "holds": v.holds if v else None, "margin": v and round(v.margin, 2),
                     "spread": v and round(v.spread, 2), "per_seed": v and [round(m, 2) for m in v.per_seed],
                     "verdict": v.text if v else "no claim", "notes": list(result.notes)}
            if len(result.verdicts) > 1:
                entry["claims"] = [{"holds": w and w.holds, "margin": w and round(w.margin, 2),
                                    "spread": w and round(w.spread, 2), "verdict": w.text if w else "no claim"}
                                   for w in result.verdicts]
            results.append(entry)
            if any(w is not None and w.holds is False for w in result.verdicts or [v]):
                failed.append(name)
            if not args.json:
                print(f"-- {name} ({result.seconds:.0f} s)", flush=True)
                for note in result.notes:   # e.g. the lesson asked for more images than there are
                    print(f"   note: {note}", flush=True)
                for row in result.rows:
                    print(f"   {row['run']:<32} val {row['best val acc (%)']:>12}  test "
                          f"{row['test acc (%)']:>12}  gap {row['train−val gap (points)']:>12}")
                for w in result.verdicts or [v]:
                    print(f"   {'HOLDS' if w and w.holds else 'DOES NOT HOLD' if w and w.holds is False else '?'}: "
                          f"{w.text if w else 'no claim'}", flush=True)
    if args.json:
        print(json.dumps({"benchmark": "lessons", "machine": machine(), "dataset": args.dataset,
                          "size": size, "lessons": results, "failed": failed}))
    elif failed:
        print(f"\n{len(failed)} claim(s) did not hold: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
