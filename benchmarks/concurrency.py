"""Several visitors at once: classify latency while a training runs (issue #4).

Against `python app.py` launched here:
- idle: 3 clients (each a gradio_client.Client with one TLS context, see _common.gradio_client, in
  its own process, as three visitors would be) call /classify with the shipped MNIST cnn in a loop
  for `--seconds`;
- training: the same while a 4th client trains (shapes, cnn, `standard` augmentation) through
  /train; a 5th client's /train meanwhile must wait in line and say so (its status is recorded).
Reported: p50, p95 and max latency of each phase over all calls, calls per second, and whether the
second training showed its place in line. Target: p95 <= 500 ms during the training. The clients
run on the same machine as the app and its training, so they take cores from both: on 2 cores
this is harsher than a lecture, where each visitor's browser runs on their own laptop.
"""
from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time

from _common import ROOT, App, emit, machine, median, parser, percentile

DIGIT = str(ROOT / "examples" / "digit_7.png")
TRAIN = dict(dataset="shapes", subset_train=10_000, subset_test=500, model="cnn", epochs=50,
             augment="standard")


def visitor(url: str, seconds: float, ready, out) -> None:
    """One client process: once all are warm, classify in a loop for `seconds`; puts
    (latencies in ms, errors) on `out`."""
    from _common import gradio_client
    from gradio_client import handle_file

    client = gradio_client(url, one_tls_context=True)
    image = handle_file(DIGIT)
    try:
        client.predict(image, ["mnist_cnn"], api_name="/classify")  # warm-up, not counted
    except Exception as e:  # noqa: BLE001 - reported by the parent
        ready.abort()
        out.put(([], [f"warm-up: {str(e)[:200]}"]))
        return
    ready.wait()
    latencies, errors, end = [], [], time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        try:
            client.predict(image, ["mnist_cnn"], api_name="/classify")
        except Exception as e:  # noqa: BLE001 - counted and reported, the others go on
            errors.append(str(e)[:200])
            continue
        latencies.append((time.perf_counter() - t) * 1000)
    out.put((latencies, errors))


def hammer(url: str, clients: int, seconds: float) -> list[float]:
    """`clients` processes classifying in a loop for `seconds`; every call's latency in ms."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Barrier(clients + 1)
    procs = [ctx.Process(target=visitor, args=(url, seconds, ready, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        pass  # a client failed to warm up: its error comes through `out`
    latencies, errors = [], []
    for _ in procs:
        lat, err = out.get(timeout=seconds + 120)
        latencies += lat
        errors += err
    for p in procs:
        p.join()
    if errors:
        raise RuntimeError(f"{len(errors)} classify calls failed, e.g. {errors[0]}")
    return latencies


def summary(name: str, latencies: list[float], seconds: float) -> dict:
    return {f"{name}_calls": len(latencies), f"{name}_calls_per_sec": len(latencies) / seconds,
            f"{name}_p50_ms": median(latencies), f"{name}_p95_ms": percentile(latencies, 0.95),
            f"{name}_max_ms": max(latencies) if latencies else float("nan")}


def status_of(job) -> str:
    outputs = job.outputs()
    return str(outputs[-1][0]) if outputs else ""


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = 4.0
    t0 = time.perf_counter()
    result = {"machine": machine(), "clients": args.clients, "seconds_per_phase": args.seconds,
              "training": TRAIN}
    with tempfile.TemporaryDirectory() as tmp, App(tmp) as app:
        result |= summary("idle", hammer(app.url, args.clients, args.seconds), args.seconds)
        trainer, second = app.client(one_tls_context=True), app.client(one_tls_context=True)
        job = trainer.submit(**TRAIN, api_name="/train")
        deadline = time.time() + 120
        while "Training" not in status_of(job):
            if job.done() or time.time() > deadline:
                raise RuntimeError(f"the training did not start: {status_of(job)!r}")
            time.sleep(0.2)
        waiting = second.submit(**dict(TRAIN, epochs=1), api_name="/train")
        latencies = hammer(app.url, args.clients, args.seconds)
        result |= summary("training", latencies, args.seconds)
        result["training_status_at_end"] = status_of(job)
        result["second_training_status"] = status_of(waiting)
        result["second_training_waited_in_line"] = "Waiting in line" in result["second_training_status"]
        second.predict(api_name="/stop_training")
        trainer.predict(api_name="/stop_training")
        job.result(timeout=60)
        waiting.result(timeout=60)
    rows = [(k, float(v), "target <= 500 ms" if k == "training_p95_ms" else "")
            for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows.append(("second training waited in line", str(result["second_training_waited_in_line"]), ""))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("concurrency", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
