"""Several visitors at once: classify latency while a training runs (issue #4).

Against `python app.py` launched here:
- idle: 3 clients (each its own gradio_client.Client, in its own thread) call /classify with the
  shipped MNIST cnn in a loop for `--seconds`;
- training: the same while a 4th client trains (shapes, cnn, `standard` augmentation) through
  /train; a 5th client's /train meanwhile must wait in line and say so (its status is recorded).
Reported: p50, p95 and max latency of each phase over all calls, calls per second, and whether the
second training showed its place in line. Target: p95 <= 500 ms during the training.
"""
from __future__ import annotations

import tempfile
import threading
import time

from _common import ROOT, App, emit, machine, median, parser, percentile

DIGIT = str(ROOT / "examples" / "digit_7.png")
TRAIN = dict(dataset="shapes", subset_train=10_000, subset_test=500, model="cnn", epochs=50,
             augment="standard")


def hammer(url: str, clients: int, seconds: float) -> list[float]:
    """`clients` threads classifying in a loop for `seconds`; every call's latency in ms."""
    from gradio_client import Client, handle_file

    latencies, lock, errors = [], threading.Lock(), []
    ready = threading.Barrier(clients + 1)

    def worker():
        client = Client(url, verbose=False)
        image = handle_file(DIGIT)
        client.predict(image, ["mnist_cnn"], api_name="/classify")  # warm-up, not counted
        ready.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                client.predict(image, ["mnist_cnn"], api_name="/classify")
            except Exception as e:  # noqa: BLE001 - counted and reported, the others go on
                errors.append(str(e)[:200])
                continue
            with lock:
                latencies.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join()
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
        from gradio_client import Client

        result |= summary("idle", hammer(app.url, args.clients, args.seconds), args.seconds)
        trainer, second = Client(app.url, verbose=False), Client(app.url, verbose=False)
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
