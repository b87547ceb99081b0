"""Compare tab: run one of the course's lessons (or up to four runs of your own) on the same data
and overlay their curves, with a results table per run."""
from __future__ import annotations

import time

import gradio as gr

from .common import (STATUS_EVERY, check_server_folder, dataset_choices, drain, format_seconds,
                     friendly_errors, load_data, redraw_wait, session_of, user_error)
from .runs import RUNS
from .storage import check_quota, owner_dir, owner_of

CUSTOM = "Custom (edit the table)"


def _custom_default():
    return [["A: CNN", "cnn", "none", "true", "adam", 0.001, "none", 3],
            ["B: CNN, no BatchNorm", "cnn", "none", "false", "adam", 0.001, "none", 3],
            ["", "", "", "", "", "", "", ""],
            ["", "", "", "", "", "", "", ""]]


def _rows_from_table(table):
    from ..experiments import CUSTOM_COLUMNS

    if table is None:
        return []
    if hasattr(table, "values"):  # a pandas DataFrame
        table = table.values.tolist()
    elif isinstance(table, dict):
        table = table.get("data", [])
    return [dict(zip(CUSTOM_COLUMNS, row)) for row in table]


def build(settings, tab=None):
    from ..experiments import CUSTOM_COLUMNS, EXPERIMENTS, SIZES, SUMMARY_COLUMNS

    names = list(EXPERIMENTS)
    gr.Markdown("One click runs a lesson: every run trains on the same data, and their curves are "
                "overlaid (dashed = train, solid = test). Runs go one after the other.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            experiment = gr.Dropdown(names + [CUSTOM], value=names[0], label="Experiment")
            description = gr.Markdown(EXPERIMENTS[names[0]].description)
            with gr.Row():
                dataset = gr.Dropdown(dataset_choices(), value="shapes", label="Dataset",
                                      allow_custom_value=True)
                size = gr.Radio(list(SIZES), value="default", label="Size",
                                info="quick: a few hundred images, 2 epochs")
            custom = gr.Dataframe(_custom_default(), headers=list(CUSTOM_COLUMNS), visible=False,
                                  label="Custom runs (up to 4; leave model empty to skip a row)",
                                  datatype=["str", "str", "str", "str", "str", "number", "str", "number"],
                                  interactive=True, column_count=len(CUSTOM_COLUMNS), row_count=4)
            with gr.Row():
                start = gr.Button("Run comparison", variant="primary", elem_id="compare-start")
                stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
        with gr.Column(scale=2):
            status = gr.Markdown("Pick an experiment and press **Run comparison**.",
                                 elem_id="compare-status", elem_classes="vl-status")
            table = gr.Dataframe(headers=list(SUMMARY_COLUMNS), label="Results per run",
                                 interactive=False, elem_id="compare-table")
            with gr.Tabs():
                with gr.Tab("Accuracy per epoch"):
                    acc_plot = gr.Plot(label="Accuracy per epoch", elem_id="compare-acc-plot")
                with gr.Tab("Loss per epoch"):
                    loss_plot = gr.Plot(label="Loss per epoch")

    def on_experiment(name):
        if name == CUSTOM:
            return ("Your own runs: one row each (model, augmentation preset, BatchNorm true/false, "
                    "optimizer, lr, scheduler, epochs). Blank cells keep the defaults.",
                    gr.update(visible=True))
        return EXPERIMENTS[name].description, gr.update(visible=False)

    def stop_run(request: gr.Request):
        if RUNS.stop(session_of(request)):
            return "**Stopping …** the current run ends within a batch; the rest are skipped."
        return gr.skip()

    def figures(histories):
        from ..plots import epoch_curves

        return epoch_curves(histories, "acc"), epoch_curves(histories, "loss")

    @friendly_errors
    def compare(experiment_name, dataset_name, size_name, custom_table, request: gr.Request = None):
        """Run a comparison; yields the live overlay and, at the end, one table row per run."""
        from ..experiments import build_runs, check_requirements, custom_runs, summary_row
        from ..training import BatchEnd, EpochEnd, RunEnd
        from ..worker import RunDied, compare_in_process

        owner = owner_of(request)
        if experiment_name == CUSTOM:
            runs = custom_runs(_rows_from_table(custom_table), dataset_name, size_name)
        else:
            runs = build_runs(experiment_name, dataset_name, size_name)
        check_server_folder(settings, dataset_name)
        check_requirements(runs)
        check_quota(settings, owner)
        with RUNS.line(session_of(request), settings.on_disconnect == "finish") as ticket:
            for line in RUNS.wait_in_line(ticket):
                yield line, gr.skip(), gr.skip(), gr.skip()
            if not ticket.admitted:
                yield "**Stopped** before it started.", gr.skip(), gr.skip(), gr.skip()
                return
            first = runs[0][1]
            yield f"Loading {dataset_name} …", _table([]), None, None
            data = load_data(first.dataset, settings.data_root, first.subset_train, first.subset_test,
                             first.seed)
            configs = dict(runs)
            histories = {label: [] for label, _ in runs}
            rows, started = [], time.perf_counter()
            mine = owner_dir(settings, owner)
            run = compare_in_process(runs, data, out_dir=mine / "compare" if mine else None,
                                     stop=ticket.stop)
            RUNS.hand_over(ticket, run)
            # The status every STATUS_EVERY seconds; the overlay when an epoch or a run has ended,
            # no more often than redraw_wait allows (see common.py).
            last_status, next_draw, dirty, current, done, died = 0.0, 0.0, True, None, False, None
            while not done:
                for item in drain(run.events, timeout=0.2):
                    if item is None:
                        done = True
                        continue
                    if isinstance(item, RunDied):
                        died = str(item)
                        continue
                    if isinstance(item, BaseException):
                        if isinstance(item, (ValueError, RuntimeError, OSError)):
                            raise user_error(item)
                        raise item
                    label, ev = item
                    current = (label, ev) if isinstance(ev, BatchEnd) else current
                    if isinstance(ev, EpochEnd):
                        histories[label].append(vars(ev).copy())
                        dirty = True
                    elif isinstance(ev, RunEnd):
                        rows.append(summary_row(label, configs[label], ev, data))
                        dirty = True
                if done:
                    break
                now = time.perf_counter()
                if now - last_status >= STATUS_EVERY:
                    line = f"**Running** · {len(rows)}/{len(runs)} runs done · elapsed {format_seconds(now - started)}"
                    if current:
                        label, b = current
                        line += (f" · **{label}**: epoch {b.epoch}/{configs[label].epochs}, "
                                 f"step {b.step}/{b.total_steps}, {b.images_per_sec:,.0f} images/s")
                    redraw = dirty and now >= next_draw
                    figs = figures(histories) if redraw else (gr.skip(), gr.skip())
                    yield line, _table(rows), *figs
                    last_status = time.perf_counter()
                    if redraw:
                        dirty, next_draw = False, last_status + redraw_wait(last_status - now)
            stopped = ticket.stop.is_set() and len(rows) < len(runs) or any(r["ended"] == "stopped" for r in rows)
            total = format_seconds(time.perf_counter() - started)
            if died:
                message = f"**{died}** {len(rows)} of {len(runs)} runs had finished."
            elif stopped:
                message = f"**Stopped** after {total}; {len(rows)} of {len(runs)} runs reported."
            else:
                message = f"**Done**: {len(runs)} runs in {total}."
            diverged = [r["run"] for r in rows if r["ended"] == "diverged"]
            if diverged:
                message += f" **Warning:** {', '.join(diverged)} diverged: try a lower learning rate."
            yield message, _table(rows), *figures(histories)

    def _table(rows):
        import pandas as pd

        return pd.DataFrame([[row[c] for c in SUMMARY_COLUMNS] for row in rows],
                            columns=list(SUMMARY_COLUMNS))

    experiment.change(on_experiment, experiment, [description, custom], queue=False,
                      api_visibility="private")
    start.click(compare, [experiment, dataset, size, custom], [status, table, acc_plot, loss_plot],
                api_name="compare", concurrency_limit=None, show_progress="hidden")
    stop.click(stop_run, None, status, queue=False, api_visibility="private")
