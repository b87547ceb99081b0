"""Compare tab: run one of the course's lessons (or up to four runs of your own) on the same data,
each over several seeds, and overlay their curves, with a results table and the lesson's verdict."""
from __future__ import annotations

import time

import gradio as gr

from ..serving.run_queue import RUNS
from .common import (check_server_folder, dataset_choices, format_seconds, friendly_errors,
                     load_data, session_of, with_settings)
from .live import follow
from .storage import check_quota, owner_dir, owner_of

CUSTOM = "Custom (edit the table)"
CUSTOM_QUESTION = ("Your own runs: one row each (model, augmentation preset, BatchNorm true/false, "
                   "optimizer, lr, scheduler, epochs). Blank cells keep the defaults. A comparison "
                   "of your own makes no claim: read the table and the curves.")
STOPPING = "**Stopping …** the current run ends within a batch; the rest are skipped."
OUTPUTS = ("status", "verdict", "table", "acc_plot", "loss_plot")


def _custom_default():
    return [["A: CNN", "cnn", "none", "true", "adam", 0.001, "none", 3],
            ["B: CNN, no BatchNorm", "cnn", "none", "false", "adam", 0.001, "none", 3],
            ["", "", "", "", "", "", "", ""],
            ["", "", "", "", "", "", "", ""]]


def layout() -> dict:
    from ..lessons import CUSTOM_COLUMNS, LESSONS, SIZES, SUMMARY_COLUMNS

    names = list(LESSONS)
    view = {}
    gr.Markdown("One click runs a lesson: every run trains on the same data, once per seed, and "
                "their curves are overlaid (dashed = train, solid = validation; the band spans "
                "the seeds). The table and the verdict use the test set, evaluated once per run "
                "at its end. Runs go one after the other.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            view["lesson"] = gr.Dropdown(names + [CUSTOM], value=names[0], label="Lesson")
            view["question"] = gr.Markdown(LESSONS[names[0]].question)
            with gr.Row():
                view["dataset"] = gr.Dropdown(dataset_choices(), value="shapes", label="Dataset",
                                              allow_custom_value=True)
                view["size"] = gr.Radio(list(SIZES), value="default", label="Size",
                                        info="quick: a few hundred images, 2 epochs, one seed")
            view["custom"] = gr.Dataframe(
                _custom_default(), headers=list(CUSTOM_COLUMNS), visible=False,
                label="Custom runs (up to 4; leave model empty to skip a row)",
                datatype=["str", "str", "str", "str", "str", "number", "str", "number"],
                interactive=True, column_count=len(CUSTOM_COLUMNS), row_count=4)
            with gr.Row():
                view["start"] = gr.Button("Run comparison", variant="primary", elem_id="compare-start")
                view["stop"] = gr.Button("Stop", variant="stop", elem_id="compare-stop")
        with gr.Column(scale=2):
            view["status"] = gr.Markdown("Pick a lesson and press **Run comparison**.",
                                         elem_id="compare-status", elem_classes="vl-status")
            view["verdict"] = gr.Markdown(elem_id="compare-verdict")
            view["table"] = gr.Dataframe(headers=list(SUMMARY_COLUMNS), label="Results per run",
                                         interactive=False, elem_id="compare-table")
            with gr.Tabs():
                with gr.Tab("Accuracy per epoch"):
                    view["acc_plot"] = gr.Plot(label="Accuracy per epoch", elem_id="compare-acc-plot")
                with gr.Tab("Loss per epoch"):
                    view["loss_plot"] = gr.Plot(label="Loss per epoch")
    return view


def _rows_from_table(table) -> list[dict]:
    from ..lessons import CUSTOM_COLUMNS

    if table is None:
        return []
    if hasattr(table, "values"):  # a pandas DataFrame
        table = table.values.tolist()
    elif isinstance(table, dict):
        table = table.get("data", [])
    return [dict(zip(CUSTOM_COLUMNS, row)) for row in table]


def _table(rows: list[dict]):
    import pandas as pd

    from ..lessons import SUMMARY_COLUMNS

    return pd.DataFrame([[row[c] for c in SUMMARY_COLUMNS] for row in rows],
                        columns=list(SUMMARY_COLUMNS))


class LiveComparison:
    """What the Compare tab shows of a comparison, from its (label, seed, event) items."""

    def __init__(self, plan, data):
        self.plan, self.data = plan, data
        self.configs = dict(plan.runs)
        self.histories = {label: {} for label, _ in plan.runs}   # label -> seed -> epochs
        self.ends = {label: [] for label, _ in plan.runs}
        self.current, self.dead, self.dirty = None, None, True
        self.started = time.perf_counter()

    def add(self, item) -> None:
        from ..training import BatchEnd, EpochEnd, RunEnd

        label, seed, ev = item
        if isinstance(ev, BatchEnd):
            self.current = (label, seed, ev)
        elif isinstance(ev, EpochEnd):
            self.histories[label].setdefault(seed, []).append(vars(ev).copy())
            self.dirty = True
        elif isinstance(ev, RunEnd):
            self.ends[label].append(ev)
            self.dirty = True

    def died(self, message: str) -> None:
        self.dead = message

    def finished(self) -> bool:
        return False  # a comparison is over when its process is

    def needs_redraw(self) -> bool:
        return self.dirty

    def done_runs(self) -> int:
        return sum(len(ends) for ends in self.ends.values())

    def total_runs(self) -> int:
        return len(self.plan.runs) * self.plan.seeds

    def status(self) -> str:
        line = (f"**Running** · {self.done_runs()}/{self.total_runs()} runs done · elapsed "
                f"{format_seconds(time.perf_counter() - self.started)}")
        if self.current:
            label, seed, b = self.current
            line += (f" · **{label}**, seed {seed}: epoch {b.epoch}/{self.configs[label].epochs}, "
                     f"step {b.step}/{b.total_steps}, {b.images_per_sec:,.0f} images/s")
        return line

    def rows(self) -> list[dict]:
        from ..lessons import summary_row

        return [summary_row(label, self.configs[label], ends, self.data)
                for label, ends in self.ends.items() if ends]

    def figures(self) -> tuple:
        from ..plots import epoch_curves

        seeds = {label: list(by_seed.values()) for label, by_seed in self.histories.items()}
        return epoch_curves(seeds, "acc"), epoch_curves(seeds, "loss")

    def frame(self, status: str, figures: bool) -> tuple:
        if not figures:
            return status, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        self.dirty = False
        return (status, gr.skip(), _table(self.rows()), *self.figures())

    def verdict(self) -> str:
        from ..lessons import verdict

        if self.plan.claim is None:
            return ""
        v = verdict(self.plan.claim, self.ends)
        if v is None:
            return "No verdict: not every run finished."
        mark = {True: "✅", False: "⚠️", None: "ℹ️"}[v.holds]
        return f"### {mark} {v.text}"

    def final(self, stop_pressed: bool) -> tuple:
        done, total = self.done_runs(), self.total_runs()
        elapsed = format_seconds(time.perf_counter() - self.started)
        if self.dead:
            message = f"**{self.dead}** {done} of {total} runs had finished."
        elif (stop_pressed and done < total) or any(e.reason == "stopped"
                                                    for ends in self.ends.values() for e in ends):
            message = f"**Stopped** after {elapsed}; {done} of {total} runs reported."
        else:
            message = f"**Done**: {total} runs ({len(self.plan.runs)} × {self.plan.seeds} seeds) in {elapsed}."
        rows = self.rows()
        diverged = [r["run"] for r in rows if "diverged" in r["ended"]]
        if diverged:
            message += f" **Warning:** {', '.join(diverged)} diverged: try a lower learning rate."
        return (message, self.verdict(), _table(rows), *self.figures())


@friendly_errors
def run_comparison(settings, lesson_name, dataset_name, size_name, custom_table,
                   request: gr.Request = None):
    """Run a comparison; yields the live overlay and, at the end, the table and the verdict."""
    from ..lessons import build_plan, check_requirements, custom_plan
    from ..serving.worker import compare_in_process

    owner = owner_of(request)
    if lesson_name == CUSTOM:
        plan = custom_plan(_rows_from_table(custom_table), dataset_name, size_name)
    else:
        plan = build_plan(lesson_name, dataset_name, size_name)
    check_server_folder(settings, dataset_name)
    check_requirements(plan)
    check_quota(settings, owner)
    skip = (gr.skip(),) * (len(OUTPUTS) - 1)
    with RUNS.line(session_of(request), settings.on_disconnect == "finish") as ticket:
        for line in RUNS.wait_in_line(ticket):
            yield (line, *skip)
        if not ticket.admitted:
            yield ("**Stopped** before it started.", *skip)
            return
        yield f"Loading {dataset_name} …", "", _table([]), None, None
        for _, config in plan.runs:
            config.data_root = settings.data_root
        data = load_data(plan.runs[0][1])
        live = LiveComparison(plan, data)
        mine = owner_dir(settings, owner)
        run = compare_in_process(plan, data, out_dir=mine / "compare" if mine else None,
                                 stop=ticket.stop)
        RUNS.hand_over(ticket, run)
        yield from follow(run.events, live, ticket.stop, STOPPING)
        yield live.final(ticket.stop.is_set())


def stop_comparison(request: gr.Request):
    if RUNS.stop(session_of(request)):
        return STOPPING
    return gr.skip()


def on_lesson(name):
    from ..lessons import LESSONS

    if name == CUSTOM:
        return CUSTOM_QUESTION, gr.update(visible=True)
    return LESSONS[name].question, gr.update(visible=False)


def build(settings, tab=None):
    view = layout()
    view["lesson"].change(on_lesson, view["lesson"], [view["question"], view["custom"]],
                          queue=False, api_visibility="private")
    view["start"].click(with_settings(run_comparison, settings),
                        [view["lesson"], view["dataset"], view["size"], view["custom"]],
                        [view[name] for name in OUTPUTS], api_name="compare",
                        concurrency_limit=None, show_progress="hidden")
    view["stop"].click(stop_comparison, None, view["status"], queue=False, api_visibility="private")
