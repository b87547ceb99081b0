"""The compute floor and what raises it on CPU: threads, channels_last, torch.compile, eval modes.

Each variant times training steps (forward, backward, Adam step, loss.item()) on one ready-made
normalized float batch of 64 CIFAR-shaped images, or, for evaluation, forward passes over batches
of 500. Rounds interleave the variants; figures are medians over rounds and ratios medians of the
per-round ratios against the default (PyTorch's defaults: all cores, contiguous, eager, Adam's
default implementation, which on CPU updates one tensor at a time; inference_mode for evaluation).

torch.compile (`compiled`) is applied on top of vision_lab's own settings (fused Adam; conv models
in channels_last) and compared with them (`compiled_vs_vision_lab`), as a two-minute demo would see
it. Its cost is `compile_setup_seconds` (the first torch.compile in a process: importing and warming
up inductor, timed on a trivial function; the app trains each run in a fresh process, so every run
pays it) plus the model's own `compile_seconds` (its first two steps: tracing and compiling forward
and backward), with an empty compile cache as on a first run (`--warm-cache` keeps inductor's
on-disk cache: run it twice for a later run's times). `compiled_break_even_seconds` is the training
time after which the compiled model has trained more images than eager (never, if it is not
faster); `compiled_demo_images` / `eager_demo_images` are the images each trains in 120 s.

`--allocator` adds the malloc comparison: vision_lab's floor in two child processes, one with
glibc's default malloc and one that keeps freed memory (see vision_lab.serving.malloc), interleaved,
with the page faults per step of each. Off by default: it adds two process start-ups.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time

from _common import emit, machine, median, minor_page_faults, parser

import torch
import torch.nn.functional as F

from vision_lab.serving.malloc import keep_freed_memory
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


def vision_lab_model(name: str):
    """The model as vision_lab's train() sets it up on CPU: conv models in channels_last."""
    model = create_model(name, 10, 3, SIZE)
    if name != "mlp":
        model = model.to(memory_format=torch.channels_last)
    return model


# The variant that matches what vision_lab.training.train() does, per model.
VISION_LAB_VARIANT = {"mlp": "fused_adam"}
DEFAULT_VISION_LAB_VARIANT = "channels_last_fused_adam"


def compile_setup_seconds() -> float | None:
    """The one-time cost of the first torch.compile in a process, on a trivial function (None if
    torch.compile does not work here; each model then reports its compile_error)."""
    t = time.perf_counter()
    try:
        torch.compile(lambda a: a * 2 + 1)(torch.ones(8))
    except Exception:  # no C++ compiler, unsupported platform...
        return None
    return time.perf_counter() - t


def compiled_step(name: str, x, y):
    """(step, seconds its first two calls took): vision_lab's settings plus torch.compile."""
    model = vision_lab_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    step = make_step(torch.compile(model), opt, x, y)
    t = time.perf_counter()
    step()  # traces and compiles forward and backward
    step()
    return step, time.perf_counter() - t


def train_variants(name: str, threads_default: int, compile_: bool) -> tuple[dict, dict]:
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, 10, (BATCH,))
    variants = {}

    def add(label, model, threads=threads_default, fused=False, xx=x):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        variants[label] = with_threads(threads, make_step(model, opt, xx, y))

    add("default", create_model(name, 10, 3, SIZE))
    if threads_default != 1:
        add("threads_1", create_model(name, 10, 3, SIZE), threads=1)
    add("fused_adam", create_model(name, 10, 3, SIZE), fused=True)
    if name != "mlp":
        add("channels_last", vision_lab_model(name))
        add("channels_last_input_too", vision_lab_model(name), xx=x.contiguous(memory_format=torch.channels_last))
        add("channels_last_fused_adam", vision_lab_model(name), fused=True)
    extra = {}
    if compile_:
        try:
            variants["compiled"], extra["compile_seconds"] = compiled_step(name, x, y)
        except Exception as e:  # no C++ compiler, unsupported platform...
            extra["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return variants, extra


def _allocator_child(conn, name: str, keep: bool) -> None:
    """Time vision_lab-settings training steps on request, in a process whose malloc keeps freed
    memory (`keep`) or is left as it is."""
    applied = keep_freed_memory() if keep else False
    torch.manual_seed(0)
    model = vision_lab_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    step = make_step(model, opt, torch.randn(BATCH, 3, SIZE, SIZE), torch.randint(0, 10, (BATCH,)))
    conn.send(applied)
    for warmup, calls in iter(conn.recv, None):
        before = minor_page_faults()
        images = rate(step, BATCH, warmup, calls)
        conn.send((images, (minor_page_faults() - before) / (warmup + calls)))


def allocator_variants(name: str, rounds: int, warmup: int, calls: int) -> dict:
    ctx = multiprocessing.get_context("spawn")  # a fresh allocator, not a copy of this one
    children = {}
    for label, keep in (("malloc_default", False), ("malloc_keep_freed", True)):
        conn, child_conn = ctx.Pipe()
        proc = ctx.Process(target=_allocator_child, args=(child_conn, name, keep), daemon=True)
        proc.start()
        children[label] = (proc, conn)
    applied = {label: conn.recv() for label, (_, conn) in children.items()}
    runs = {label: [] for label in children}
    faults = {label: [] for label in children}
    for _ in range(rounds):
        for label, (_, conn) in children.items():
            conn.send((warmup, calls))
            images, per_step = conn.recv()
            runs[label].append(images)
            faults[label].append(per_step)
    for proc, conn in children.values():
        conn.send(None)
        proc.join()
    r = {f"{k}_images_per_sec": median(v) for k, v in runs.items()}
    r.update({f"{k}_page_faults_per_step": median(v) for k, v in faults.items()})
    r["malloc_keep_freed_vs_default"] = median(
        [a / b for a, b in zip(runs["malloc_keep_freed"], runs["malloc_default"])])
    r["malloc_keep_freed_applied"] = applied["malloc_keep_freed"]
    return r


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


def bench_model(name, rounds, warmup, calls, eval_calls, compile_, setup_seconds=None, allocator=False):
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
    if allocator:
        r.update(allocator_variants(name, rounds, warmup, calls))
    r["threads_default"] = threads
    baseline = VISION_LAB_VARIANT.get(name, DEFAULT_VISION_LAB_VARIANT)
    r["vision_lab_variant"] = baseline
    if "compiled" in runs:
        r["compiled_vs_vision_lab"] = median([a / b for a, b in zip(runs["compiled"], runs[baseline])])
        eager, comp = r[f"{baseline}_images_per_sec"], r["compiled_images_per_sec"]
        cost = extra["compile_seconds"] + (setup_seconds or 0.0)
        r["compile_setup_seconds"] = setup_seconds
        # Eager trains eager * t images in t seconds, compiled comp * (t - cost): equal at t below.
        r["compiled_break_even_seconds"] = cost * comp / (comp - eager) if comp > eager else None
        r["compiled_demo_images"] = max(0.0, DEMO_SECONDS - cost) * comp
        r["eager_demo_images"] = DEMO_SECONDS * eager
        r["compiled_pays_off_in_demo"] = r["compiled_demo_images"] > r["eager_demo_images"]
    return r


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=15, help="timed training steps per variant and round")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    p.add_argument("--allocator", action="store_true",
                   help="also compare glibc malloc's default with keeping freed memory (two child processes)")
    p.add_argument("--warm-cache", action="store_true",
                   help="compile with inductor's usual on-disk cache instead of an empty one")
    args = p.parse_args(argv)
    warmup, eval_calls = 2, 1  # keeps the run, compiling included, well under two minutes
    if args.quick:
        args.rounds, args.calls, warmup, eval_calls = 1, 2, 1, 1
    compile_ = not args.no_compile and not args.quick
    t0 = time.perf_counter()
    result = {"machine": machine(), "batch_size": BATCH}
    rows = []
    cache = None
    if compile_ and not args.warm_cache:
        # An empty cache, so compile times are those of a first run on a new machine.
        cache = tempfile.mkdtemp(prefix="floor-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        setup = compile_setup_seconds() if compile_ else None
        for name in args.models.split(","):
            r = bench_model(name, args.rounds, warmup, args.calls, eval_calls, compile_, setup, args.allocator)
            result[name] = r
            for k, v in r.items():
                if isinstance(v, float):
                    rows.append((f"{name} {k}", v, ""))
                elif k in ("compile_error", "compiled_pays_off_in_demo", "vision_lab_variant",
                           "malloc_keep_freed_applied") or (
                        k == "compiled_break_even_seconds" and v is None):
                    rows.append((f"{name} {k}", "never" if v is None else str(v), ""))
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("floor", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
