"""The compute floor and what raises it on CPU: threads, channels_last, torch.compile, eval modes.

Each variant times training steps (forward, backward, Adam step, loss.item()) on one ready-made
normalized float batch of 64 CIFAR-shaped images, or, for evaluation, forward passes over batches
of 500. Rounds interleave the variants; figures are medians over rounds and ratios medians of the
per-round ratios against the default (PyTorch's defaults: all cores, contiguous, eager, Adam's
default implementation, which on CPU updates one tensor at a time; inference_mode for evaluation).

torch.compile is judged as a two-minute demo would see it: images trained in 120 s including the
compile time, against eager.
"""
from __future__ import annotations

import time

from _common import emit, machine, median, parser

import torch
import torch.nn.functional as F

from vision_lab.models import create_model

BATCH = 64
SIZE = 32
DEMO_SECONDS = 120.0


def make_step(model, optimizer, x, y):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
    return step


def rate(fn, images_per_call: int, warmup: int, calls: int) -> float:
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return images_per_call * calls / (time.perf_counter() - t)


def with_threads(n, fn):
    def run():
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(old)
    return run


def train_variants(name: str, threads_default: int, compile_: bool) -> tuple[dict, dict]:
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, 10, (BATCH,))
    variants = {}

    def add(label, model, threads=threads_default, fused=False, xx=x):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        variants[label] = with_threads(threads, make_step(model, opt, xx, y))

    def channels_last():
        return create_model(name, 10, 3, SIZE).to(memory_format=torch.channels_last)

    add("default", create_model(name, 10, 3, SIZE))
    if threads_default != 1:
        add("threads_1", create_model(name, 10, 3, SIZE), threads=1)
    add("fused_adam", create_model(name, 10, 3, SIZE), fused=True)
    if name != "mlp":
        add("channels_last", channels_last())
        add("channels_last_input_too", channels_last(), xx=x.contiguous(memory_format=torch.channels_last))
        add("channels_last_fused_adam", channels_last(), fused=True)  # what vision_lab uses
    extra = {}
    if compile_:
        model = create_model(name, 10, 3, SIZE)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        compiled = torch.compile(model)
        step = make_step(compiled, opt, x, y)
        t = time.perf_counter()
        try:
            step()  # compiles forward and backward
            step()
            extra["compile_seconds"] = time.perf_counter() - t
            variants["compiled"] = step
        except Exception as e:  # no C++ compiler, unsupported platform...
            extra["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return variants, extra


def eval_variants(name: str) -> dict:
    torch.manual_seed(0)
    model = create_model(name, 10, 3, SIZE).eval()
    x = torch.randn(500, 3, SIZE, SIZE)

    def grad():
        model(x).sum().item()

    def no_grad():
        with torch.no_grad():
            model(x).sum().item()

    def inference():
        with torch.inference_mode():
            model(x).sum().item()

    v = {"eval_inference_mode": inference, "eval_no_grad": no_grad, "eval_grad_enabled": grad}
    if name != "mlp":
        cl = create_model(name, 10, 3, SIZE).eval().to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)

        def inference_cl():
            with torch.inference_mode():
                cl(xc).sum().item()
        v["eval_inference_mode_channels_last"] = inference_cl
    return v


def bench_model(name, rounds, warmup, calls, eval_calls, compile_):
    threads = torch.get_num_threads()
    train, extra = train_variants(name, threads, compile_)
    evals = eval_variants(name)
    runs = {k: [] for k in [*train, *evals]}
    for _ in range(rounds):
        for label, fn in train.items():
            runs[label].append(rate(fn, BATCH, warmup, calls))
        for label, fn in evals.items():
            runs[label].append(rate(fn, 500, 1, eval_calls))
    r = {f"{k}_images_per_sec": median(v) for k, v in runs.items()}
    for k in runs:
        if k != "default" and not k.startswith("eval_"):
            r[f"{k}_vs_default"] = median([a / b for a, b in zip(runs[k], runs["default"])])
        if k.startswith("eval_") and k != "eval_inference_mode":
            r[f"{k}_vs_inference_mode"] = median([a / b for a, b in zip(runs[k], runs["eval_inference_mode"])])
    r.update(extra)
    r["threads_default"] = threads
    if "compiled" in runs:
        eager, comp = r["default_images_per_sec"], r["compiled_images_per_sec"]
        r["compiled_demo_images"] = max(0.0, DEMO_SECONDS - extra["compile_seconds"]) * comp
        r["eager_demo_images"] = DEMO_SECONDS * eager
        r["compiled_pays_off_in_demo"] = r["compiled_demo_images"] > r["eager_demo_images"]
    return r


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=15, help="timed training steps per variant and round")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    args = p.parse_args(argv)
    warmup, eval_calls = 3, 2
    if args.quick:
        args.rounds, args.calls, warmup, eval_calls = 1, 2, 1, 1
    t0 = time.perf_counter()
    result = {"machine": machine(), "batch_size": BATCH}
    rows = []
    for name in args.models.split(","):
        r = bench_model(name, args.rounds, warmup, args.calls, eval_calls,
                        compile_=not args.no_compile and not args.quick and name == "cnn")
        result[name] = r
        for k, v in r.items():
            if isinstance(v, float):
                rows.append((f"{name} {k}", v, ""))
            elif k in ("compile_error", "compiled_pays_off_in_demo"):
                rows.append((f"{name} {k}", str(v), ""))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("floor", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
