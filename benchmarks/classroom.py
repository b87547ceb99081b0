"""A class at once: N students press the same lesson, then each trains their own run, while others
classify (issue "The classroom").

Against `python app.py --public` launched here (a public server: 40 places in line):
- lesson: `--students` students press the same Compare lesson (`--lesson`, default size, shapes)
  at the same moment; reported per student: seconds from the press to the result, and whether it
  was refused or replayed;
- own: the same students each train their own small run at the same moment (issue "The class as
  one team": shapes, `--images` training images (1,000), `--epochs` epochs (2), the cnn, each
  their own seed, so no two are identical); reported per student: refused or not, whether they
  were shown their place in line and an estimate of the wait, the first estimate against the wait
  they really had, and seconds to the result. For the class: the time from the common press to
  the last result, against the *summed compute*: the sum over the students of their run's epoch
  seconds (training, validation and internals, as each EpochEnd reports them) when each config
  runs alone. Those are measured AFTER the class phase, with the app stopped, in one fresh
  process of `--root`'s code that runs `vision_lab.training.train` on each student's config (as
  the app returned it) one after another, as the CLI does (its first run pays torch's warm-up,
  as a CLI run would; the others do not, so the sum is, if anything, low). Target: the last
  result within 1.25x the summed compute; the overhead per run is what the class's wait spends
  beyond it, divided by the students;
- meanwhile `--classifiers` visitors each call /classify (the shipped MNIST cnn) once a second;
  reported: p50 and p95 of those calls while idle, during each phase, and overall.

Each student and each classifying visitor is its own gradio_client.Client with one TLS context
(docs/api.md, "The running app, from Python"); students run as threads in `--procs` processes, the
classifying visitors each in a process of their own. All clients are created and connected before
the moment everybody presses, and only what follows is timed. The clients run on the same machine
as the app and its trainings, so they take cores from both: harsher than a lecture, where each
student's browser runs on their own laptop. `--split-cores` keeps them apart instead: the app and
its trainings on one core, the clients on the rest (half a Space's cores for the server, but none
of them taken by the browsers).

    python benchmarks/classroom.py --students 30
    python benchmarks/classroom.py --students 30 --phases own --root /path/to/older/checkout
    python benchmarks/classroom.py --students 30 --split-cores
    python benchmarks/classroom.py --students 12 --phases own --images 1000 --classifiers 6
"""
from __future__ import annotations

import multiprocessing
import os
import random
import re
import statistics
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import (PYTHON, ROOT, emit, free_port, gradio_client, machine, parser, percentile,
                     wait_for_http)

DIGIT = str(ROOT / "examples" / "digit_7.png")


class ClassApp:
    """`python app.py --public ...` (from `root`, default this checkout) on a free port, its runs in
    a temp folder."""

    def __init__(self, runs_dir: str, root: Path = ROOT, args=(), timeout: float = 180.0,
                 cpus: set | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "VISION_LAB_CHECKPOINTS": runs_dir, "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONUNBUFFERED": "1"}
        self.log = open(Path(runs_dir) / "app.log", "w")
        self.proc = subprocess.Popen([PYTHON, str(Path(root) / "app.py"), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--public", *args], cwd=root, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     # Before it starts: its forkserver and trainings inherit the cores.
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        # Not every 20 ms: gradio's launch() checks its own page with a 3 s timeout and exits
        # when that fails, and a page request costs a busy 2-core machine enough to make it fail.
        wait_for_http(self.url, timeout, self.proc, interval=1.0)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def client(url: str):
    return gradio_client(url, one_tls_context=True)


# ---- visitors classifying ---------------------------------------------------------------------------

def classifier(url: str, endpoint: str, stop, ready, out, cpus=None) -> None:
    """One visitor: /classify (or /feature_maps) once a second until `stop` is set; puts
    (endpoint, [(time, ms)], errors) on `out`."""
    from gradio_client import handle_file

    if cpus:
        os.sched_setaffinity(0, cpus)   # see --split-cores

    c = client(url)
    image = handle_file(DIGIT)

    def call():
        if endpoint == "classify":
            c.predict(image, ["mnist_cnn"], api_name="/classify")
        else:
            c.predict(image=image, checkpoint="mnist_cnn", api_name="/feature_maps")

    for attempt in range(3):  # warm-up, not counted
        try:
            call()
            break
        except Exception as e:  # noqa: BLE001 - reported by the parent
            if attempt == 2:
                out.put((endpoint, [], [f"warm-up: {str(e)[:200]}"]))
                ready.abort()
                return
    ready.wait()
    # Visitors do not click in step: each starts at its own moment within the first second (all
    # at once, ten calls would queue behind each other every second).
    stop.wait(random.Random(os.getpid()).uniform(0, 1))
    calls, errors = [], []
    while not stop.is_set():
        started = time.time()
        t = time.perf_counter()
        try:
            call()
            calls.append((started, (time.perf_counter() - t) * 1000))
        except Exception as e:  # noqa: BLE001 - counted, the others go on
            errors.append(str(e)[:200])
        stop.wait(max(0.0, 1.0 - (time.time() - started)))
    out.put((endpoint, calls, errors))


# ---- students -----------------------------------------------------------------------------------------

ETA = re.compile(r"Your turn in about (?:(\d+) min )?(\d+) s")
PLACE = re.compile(r"Waiting in line: number (\d+)")


class GaveUp(Exception):
    pass


def follow(job, started: float, timeout: float) -> dict:
    """Watch a submitted job's outputs until it ends (or `timeout` seconds have passed: then the
    student gives up, as a student does): when the student saw what."""
    seen, result = 0, {"place": None, "eta_s": None, "left_line_s": None, "statuses": 0}
    while True:
        if time.perf_counter() - started > timeout:
            job.cancel()
            raise GaveUp(f"gave up after {timeout:.0f} s (place {result['place']})")
        done = job.done()
        outputs = job.outputs()
        for out in outputs[seen:]:
            status = str(out[0] if isinstance(out, (list, tuple)) else out)
            now = time.perf_counter() - started
            place, eta = PLACE.search(status), ETA.search(status)
            if place and result["place"] is None:
                result["place"] = int(place.group(1))
            if eta and result["eta_s"] is None:
                result["eta_s"] = int(eta.group(1) or 0) * 60 + int(eta.group(2))
            if not place and result["left_line_s"] is None:
                result["left_line_s"] = now
        seen = len(outputs)
        result["statuses"] = seen
        if done:
            return result
        time.sleep(0.2)


def student(c, task: dict, go: threading.Barrier, out: list) -> None:
    go.wait()
    started = time.perf_counter()
    record = {"student": task["student"], "phase": task["phase"], "refused": False, "error": None}
    try:
        job = c.submit(**task["kwargs"], api_name=task["api"])
        record |= follow(job, started, task["timeout"])
        final = job.result(timeout=60)
        record["seconds"] = time.perf_counter() - started
        record["ended_at"] = time.time()
        record["status"] = str(final[0])[:160]
        record["replayed"] = "Replayed" in record["status"]
        summary = final[-1] if isinstance(final, (list, tuple)) and final else None
        if isinstance(summary, dict) and "config" in summary:   # /train's result
            record["config"] = summary["config"]
            record["epoch_seconds"] = sum(h.get("seconds") or 0 for h in summary.get("history", []))
    except Exception as e:  # noqa: BLE001 - a refusal or an error is a result here
        record["seconds"] = time.perf_counter() - started
        record["refused"] = "busy" in str(e)
        record["gave_up"] = isinstance(e, GaveUp)
        record["error"] = str(e)[:200]
    out.append(record)


def students(url: str, tasks: list[dict], ready, start_at, out, niceness: int = 0,
             cpus=None) -> None:
    """One process holding several students (threads), each with their own client."""
    if niceness:
        os.nice(niceness)   # their browsers would run on their own laptops: see --student-nice
    if cpus:
        os.sched_setaffinity(0, cpus)   # see --split-cores
    clients = [client(url) for _ in tasks]
    ready.wait()
    go = threading.Barrier(len(tasks))
    records: list = []
    # Everybody presses at the moment the parent chose (shared across processes).
    delay = start_at.value - time.time()
    if delay > 0:
        time.sleep(delay)
    threads = [threading.Thread(target=student, args=(c, t, go, records)) for c, t in zip(clients, tasks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(records)


def run_phase(ctx, url: str, tasks: list[dict], procs: int, niceness: int = 0,
              cpus=None, meter=None) -> tuple[list[dict], float, float]:
    """All students of a phase press at the same moment; returns their records and the phase's
    start and end (wall clock), and `meter`'s shares of the CPU from the press to the end."""
    groups = [tasks[i::procs] for i in range(procs) if tasks[i::procs]]
    ready = ctx.Barrier(len(groups) + 1)
    start_at = ctx.Value("d", 0.0)
    out = ctx.Queue()
    ps = [ctx.Process(target=students, args=(url, g, ready, start_at, out, niceness, cpus))
          for g in groups]
    for p in ps:
        p.start()
    ready.wait(timeout=600)               # every client connected
    start_at.value = time.time() + 1.0
    begin = start_at.value
    if meter is not None:
        time.sleep(max(0.0, begin - time.time()))
        cpu_at = meter.read()
    records = []
    for _ in ps:
        records += out.get(timeout=max(t["timeout"] for t in tasks) + 300)
    for p in ps:
        p.join()
    records.sort(key=lambda r: r["student"])
    cpu = meter.shares(tasks[0]["phase"], cpu_at, meter.read()) if meter is not None else {}
    for r in records:  # as each phase ends, on stderr: a run cut short still says this much
        print(f"  {line(r)}", file=sys.stderr, flush=True)
    return records, begin, time.time(), cpu


def line(r: dict) -> str:
    what = ("REFUSED" if r["refused"] else "GAVE UP" if r.get("gave_up") else
            f"error: {r['error'][:60]}" if r["error"] else f"{r['seconds']:6.1f} s")
    seen = (f"place {r['place']}, ETA {r['eta_s']} s, left the line after "
            f"{r['left_line_s'] or 0:.0f} s" if r.get("place") else "no wait")
    return (f"{r['phase']:<6} student {r['student']:>2}: {what:<14} {seen}"
            f"{' (replayed)' if r.get('replayed') else ''}")


# ---- where the machine's CPU went ------------------------------------------------------------------

def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants, the exited ones it waited for
    included (the app's trainings are reaped by its forkserver, which is alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        used[child] = sum(int(x) for x in fields[11:15]) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += used.get(current, 0.0)
        todo += [c for c, parent in parents.items() if parent == current]
    return total


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (every process, other users' included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by the app (server, forkserver, trainings, drawing helper), the classifying
    visitors' processes, and the whole machine, at the start and end of a window."""

    def __init__(self, app_pid: int, visitor_pids: list[int]):
        self.app_pid, self.visitor_pids = app_pid, visitor_pids

    def read(self) -> tuple[float, float, float, float]:
        return (time.time(), tree_cpu(self.app_pid),
                sum(tree_cpu(p) for p in self.visitor_pids), machine_cpu())

    @staticmethod
    def shares(name: str, start, end) -> dict:
        """Each one's share of the machine's cores over the window (1.0: all of them)."""
        seconds = (end[0] - start[0]) * (os.cpu_count() or 1)
        app, visitors, busy = (end[i] - start[i] for i in (1, 2, 3))
        return {f"cpu_{name}_app_share": app / seconds,
                f"cpu_{name}_classifiers_share": visitors / seconds,
                f"cpu_{name}_rest_share": (busy - app - visitors) / seconds}


# ---- the summed compute -------------------------------------------------------------------------

ALONE = r"""
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from vision_lab.train_config import RunEnd, TrainConfig
from vision_lab.training import train

out = []
with tempfile.TemporaryDirectory() as tmp:
    for i, d in enumerate(json.load(sys.stdin)):
        config = TrainConfig.from_dict({**d, "out": f"{tmp}/run-{i}.safetensors", "resume": None})
        t = time.perf_counter()
        end = None
        for event in train(config):
            if isinstance(event, RunEnd):
                end = event
        out.append({"epoch_seconds": sum(h["seconds"] for h in end.history),
                    "wall_seconds": time.perf_counter() - t})
print(json.dumps(out))
"""


def alone(root: Path, configs: list[dict]) -> list[dict]:
    """Each config's run alone, one after another in one fresh process of `root`'s code (the app
    stopped): its epoch seconds and its whole wall time (data, test pass and checkpoint included)."""
    done = subprocess.run([PYTHON, "-c", ALONE, str(root)], input=json.dumps(configs), cwd=root,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "VISION_LAB_CHECKPOINTS": tempfile.gettempdir()})
    if done.returncode:
        raise RuntimeError("the runs alone failed:\n" + done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def class_figures(records: list[dict], begin: float, root: Path) -> dict:
    """The own phase against its summed compute (see the docstring)."""
    done = [r for r in records if r.get("config") and not r["error"]]
    if not done:
        return {}
    runs = alone(root, [r["config"] for r in done])
    summed = sum(r["epoch_seconds"] for r in runs)
    last = max(r["ended_at"] for r in done) - begin   # from the moment everybody pressed
    n = len(done)
    return {"own_last_result_s": last, "own_summed_compute_s": summed,
            "own_last_vs_summed_compute": last / summed,
            "own_alone_wall_s": sum(r["wall_seconds"] for r in runs),
            "own_in_app_epoch_s": sum(r["epoch_seconds"] for r in done),
            "own_overhead_per_run_s": (last - summed) / n,
            "own_overhead_share": 1 - summed / last}


def latencies(calls, begin: float, end: float) -> list[float]:
    return [ms for at, ms in calls if begin <= at < end]


def summary(endpoint: str, name: str, ms: list[float]) -> dict:
    return {f"{endpoint}_{name}_calls": len(ms), f"{endpoint}_{name}_p50_ms": percentile(ms, 0.5),
            f"{endpoint}_{name}_p95_ms": percentile(ms, 0.95)}


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--classifiers", type=int, default=10, help="visitors calling /classify")
    p.add_argument("--feature-maps", type=int, default=0, help="visitors calling /feature_maps")
    p.add_argument("--procs", type=int, default=6, help="processes the students' clients run in")
    p.add_argument("--phases", default="lesson,own", help="comma-separated: lesson, own")
    p.add_argument("--lesson", default="MLP vs CNN")
    p.add_argument("--size", default="default", help="the lesson's size (default, quick)")
    p.add_argument("--images", type=int, default=1000, help="training images of each student's own run")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each student's own run")
    p.add_argument("--model", default="cnn", help="model of each student's own run")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=900.0,
                   help="a student gives up (and closes the page) after waiting this long")
    p.add_argument("--student-nice", type=int, default=0,
                   help="niceness of the students' client processes: in a lecture each student's "
                        "browser runs on their own laptop, here their clients share the server's "
                        "cores unless they run at a lower priority (e.g. 10)")
    p.add_argument("--split-cores", action="store_true",
                   help="the app and its trainings on the first core, every simulated browser on "
                        "the others: a server with half a Space's cores whose visitors' browsers "
                        "do not take its CPU (without it they share every core)")
    p.add_argument("--root", default=str(ROOT), help="the checkout whose app.py is measured")
    p.add_argument("--app-args", default="", help="more flags for app.py")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.images, args.idle_seconds, args.model = "quick", 64, 2.0, "mlp"
        args.epochs = 1
        args.classifiers = min(args.classifiers, 1)
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    ctx = multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    result = {"machine": machine(), "students": args.students, "classifiers": args.classifiers,
              "lesson": args.lesson, "lesson_size": args.size, "own_images": args.images,
              "own_epochs": args.epochs, "root": str(args.root)}
    rows, records, errors = [], [], []
    server_cpus = client_cpus = None
    if args.split_cores:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            p.error("--split-cores needs at least two cores")
        server_cpus, client_cpus = {cores[0]}, set(cores[1:])
    result["split_cores"] = bool(args.split_cores)
    with tempfile.TemporaryDirectory() as tmp:
        app = ClassApp(tmp, Path(args.root), args.app_args.split(), cpus=server_cpus)
        failed = True
        try:
            calls_out, cls = ctx.Queue(), []
            visitors = ["classify"] * args.classifiers + ["feature_maps"] * args.feature_maps
            ready = ctx.Barrier(len(visitors) + 1)
            stop = ctx.Event()
            for endpoint in visitors:
                proc = ctx.Process(target=classifier,
                                   args=(app.url, endpoint, stop, ready, calls_out, client_cpus))
                proc.start()
                cls.append(proc)
            if visitors:
                ready.wait(timeout=600)
            print(f"app up, {args.classifiers} visitors classifying", file=sys.stderr, flush=True)
            meter = CpuMeter(app.proc.pid, [proc.pid for proc in cls])
            idle_begin, cpu_at = time.time(), meter.read()
            time.sleep(args.idle_seconds)
            windows = {"idle": (idle_begin, time.time())}
            result |= meter.shares("idle", cpu_at, meter.read())
            if "lesson" in phases:
                tasks = [{"student": i, "phase": "lesson", "api": "/compare", "timeout": args.timeout,
                          "kwargs": dict(lesson_name=args.lesson, dataset_name="shapes",
                                         size_name=args.size)} for i in range(args.students)]
                got, begin, end, cpu = run_phase(ctx, app.url, tasks, min(args.procs, args.students),
                                                 args.student_nice, client_cpus, meter)
                records += got
                windows["lesson"] = (begin, end)
                result |= cpu
            if "own" in phases:
                tasks = [{"student": i, "phase": "own", "api": "/train", "timeout": args.timeout,
                          "kwargs": dict(dataset="shapes", subset_train=args.images, subset_test=100,
                                         model=args.model, epochs=args.epochs, seed=1000 + i)}
                         for i in range(args.students)]
                got, begin, end, cpu = run_phase(ctx, app.url, tasks, min(args.procs, args.students),
                                                 args.student_nice, client_cpus, meter)
                records += got
                windows["own"] = (begin, end)
                own_begin = begin
                result |= cpu
            stop.set()
            calls, errors = {"classify": [], "feature_maps": []}, []
            for _ in cls:
                endpoint, got_calls, got_errors = calls_out.get(timeout=120)
                calls[endpoint] += got_calls
                errors += got_errors
            for proc in cls:
                proc.join()
            failed = False
        finally:
            app.close()
            if failed or errors or any(r["error"] and not r["refused"] and not r.get("gave_up")
                                       for r in records):
                print("The app's log ends with:\n" + (Path(tmp) / "app.log").read_text()[-4000:],
                      file=sys.stderr)
    if "own" in phases:   # the app is stopped now: each config alone
        result |= class_figures([r for r in records if r["phase"] == "own"], own_begin,
                                Path(args.root))
    result["students_records"] = records
    for phase in phases:
        mine = [r for r in records if r["phase"] == phase]
        done = [r["seconds"] for r in mine if not r["refused"] and not r["error"]]
        result[f"{phase}_refused"] = sum(r["refused"] for r in mine)
        result[f"{phase}_gave_up"] = sum(bool(r.get("gave_up")) for r in mine)
        result[f"{phase}_errors"] = sum(bool(r["error"]) and not r["refused"] and not r.get("gave_up")
                                        for r in mine)
        result[f"{phase}_done"] = len(done)
        result[f"{phase}_median_s"] = statistics.median(done) if done else float("nan")
        result[f"{phase}_max_s"] = max(done) if done else float("nan")
        result[f"{phase}_replayed"] = sum(bool(r.get("replayed")) for r in mine)
        result[f"{phase}_saw_place"] = sum(r.get("place") is not None for r in mine)
        result[f"{phase}_saw_eta"] = sum(r.get("eta_s") is not None for r in mine)
        waits = [(r["eta_s"], r["left_line_s"]) for r in mine
                 if r.get("eta_s") is not None and r.get("left_line_s") is not None]
        if waits:
            result[f"{phase}_eta_error_median_s"] = statistics.median(abs(e - w) for e, w in waits)
            result[f"{phase}_eta_ratio_median"] = statistics.median(e / max(w, 1) for e, w in waits)
    result["call_errors"] = len(errors)
    result["call_error_examples"] = sorted(set(errors))[:3]
    for endpoint in [e for e in calls if calls[e]]:
        for name, (begin, end) in windows.items():
            result |= summary(endpoint, name, latencies(calls[endpoint], begin, end))
            busy = [ms for name, (b, e) in windows.items() if name != "idle"
                for ms in latencies(calls[endpoint], b, e)]
        if busy:
            result |= summary(endpoint, "busy", busy)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    for key, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            note = ""
            if key == "lesson_max_s":
                note = "target <= 10 s"
            elif key == "own_last_vs_summed_compute":
                note = "target <= 1.25"
            elif key.endswith("_refused"):
                note = "target 0"
            elif key.endswith("_p95_ms") and not key.endswith("idle_p95_ms"):
                note = "target <= 500 ms"
            rows.append((key, float(value), note))
    emit("classroom", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
