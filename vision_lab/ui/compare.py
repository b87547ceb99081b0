"""Compare tab: run one of the course's lessons (or up to four runs of your own) on the same data,
each over several seeds, and overlay their curves, with a results table and the lesson's verdict.

What the tab says comes from the catalogue (`compare.*` keys in i18n/en.json); what the lessons say (a
lesson's title and question, run labels, the verdict) comes from the library as catalogue Texts,
said here in the visitor's language. Choice values (lesson names, sizes, the custom choice) stay
English: they are what the /compare API takes.
"""
from __future__ import annotations

import time

import gradio as gr

from ..i18n import catalogue, current, join, render, t, text
from ..serving.once import Once
from ..serving.run_queue import RUNS
from .common import (check_server_folder, dataset_choices, format_seconds, friendly_errors,
                     session_of, with_settings)
from . import share
from .language import ui_text
from .live import follow_job, run_data, static_text
from .share import CUSTOM
from .storage import check_quota, owner_of

CUSTOM_QUESTION = ui_text("compare.custom_question")
STOPPING = text("compare.stopping")
OUTPUTS = ("status", "verdict", "table", "acc_plot", "loss_plot", "inside_plot")
# The results table's columns (lesson_results.SUMMARY_COLUMNS, what the API returns in English), by the
# catalogue key of their heading.
COLUMN_KEYS = {"run": "compare.column.run", "model": "compare.column.model",
               "parameters": "compare.column.parameters",
               "seconds per epoch": "compare.column.seconds_per_epoch",
               "best val acc (%)": "compare.column.best_val_acc",
               "test acc (%)": "compare.column.test_acc",
               "train−val gap (points)": "compare.column.gap", "seeds": "compare.column.seeds",
               "ended": "compare.column.ended"}


def lesson_title(name: str):
    """A lesson's title as the picker shows it (lessons.lesson_title where the library has it)."""
    from .. import lessons

    return getattr(lessons, "lesson_title", lambda n: n)(name)


def lesson_choices() -> list[tuple]:
    """(label, value) of every lesson and of the custom table; labels the page translates."""
    from ..lessons import LESSONS

    return [*[(static_text(lesson_title(name)), name) for name in LESSONS],
            (ui_text("compare.custom"), CUSTOM)]


def size_choices() -> list[tuple]:
    """(label, value) of every size: the values are the API's ("quick", "default")."""
    from ..lessons import SIZES

    return [(ui_text(f"compare.size.{name}"), name) for name in SIZES]


def _custom_default():
    """Two filled rows (every column at its default but BatchNorm) and two blank ones."""
    from ..custom_comparison import CUSTOM_COLUMNS

    # The labels are the visitor's to edit, so they are written in their language (t: English
    # when the page is drawn, the visitor's when `custom_table` fills it on load).
    filled = [[t("compare.custom_default.a"), "cnn", "none", "true", "adam", 0.001, "none", 3, 0.5,
               0, 0, 0, 1],
              [t("compare.custom_default.b"), "cnn", "none", "false", "adam", 0.001, "none", 3,
               0.5, 0, 0, 0, 1]]
    return filled + [[""] * len(CUSTOM_COLUMNS)] * 2


@friendly_errors
def custom_table(request: gr.Request = None):
    """The custom table with its headings in the visitor's language (gradio's page does not
    translate them). The cells stay the same: the table is read back by position."""
    import pandas as pd

    from ..custom_comparison import CUSTOM_COLUMNS

    return pd.DataFrame(_custom_default(),
                        columns=[t(f"compare.custom_column.{key}") for key in CUSTOM_COLUMNS])


def layout() -> dict:
    from ..lessons import LESSONS
    from ..lesson_results import SUMMARY_COLUMNS
    from ..custom_comparison import CUSTOM_COLUMNS

    names = list(LESSONS)
    view = {}
    gr.Markdown(ui_text("compare.intro"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            view["lesson"] = gr.Dropdown(lesson_choices(), value=names[0],
                                         label=ui_text("compare.lesson"), elem_id="compare-lesson")
            # Lecture mode (lecture.py) shows a lesson in three steps: the question, the run, and
            # the answer, which stays hidden until the lecturer reveals it.
            gr.Markdown(ui_text("compare.step_question"), elem_classes="vl-lecture-only")
            view["question"] = gr.Markdown(static_text(LESSONS[names[0]].question),
                                           elem_classes="vl-question", elem_id="compare-question")
            with gr.Row():
                # Dataset names are what the CLI and the API take: shown as they are.
                view["dataset"] = gr.Dropdown(dataset_choices(), value="shapes",
                                              label=ui_text("compare.dataset"),
                                              allow_custom_value=True)
                view["size"] = gr.Radio(size_choices(), value="default",
                                        label=ui_text("compare.size"),
                                        info=ui_text("compare.size_info"), elem_id="compare-size")
            # The column names are the lessons' own (the keys an API caller's table may use);
            # `custom_table` says them in the visitor's language when the page loads.
            view["custom"] = gr.Dataframe(
                _custom_default(), headers=list(CUSTOM_COLUMNS), visible=False,
                label=ui_text("compare.custom_table"),
                datatype=["str"] * 5 + ["number", "str"] + ["number"] * 6,
                interactive=True, column_count=len(CUSTOM_COLUMNS), row_count=4,
                elem_id="compare-custom")
            with gr.Row():
                view["start"] = gr.Button(ui_text("compare.start"), variant="primary",
                                          elem_id="compare-start")
                view["stop"] = gr.Button(ui_text("compare.stop"), variant="stop",
                                         elem_id="compare-stop")
            view["reveal"] = gr.Button(ui_text("compare.reveal"), elem_id="compare-reveal",
                                       elem_classes="vl-lecture-only")
            view["link"] = share.link_box("compare-link")
        with gr.Column(scale=2):
            gr.Markdown(ui_text("compare.step_run"), elem_classes="vl-lecture-only")
            view["status"] = gr.Markdown(ui_text("compare.ready"),
                                         elem_id="compare-status", elem_classes="vl-status")
            with gr.Column(elem_id="compare-answer", elem_classes="vl-answer"):
                view["verdict"] = gr.Markdown(elem_id="compare-verdict")
                # gradio's page does not translate a table's headings: `headings` sets them in
                # the visitor's language when the page loads.
                view["table"] = gr.Dataframe(headers=list(SUMMARY_COLUMNS),
                                             label=ui_text("compare.table"),
                                             interactive=False, elem_id="compare-table")
            with gr.Tabs():
                with gr.Tab(ui_text("compare.acc_plot")):
                    view["acc_plot"] = gr.Plot(label=ui_text("compare.acc_plot"),
                                               elem_id="compare-acc-plot")
                with gr.Tab(ui_text("compare.loss_plot")):
                    view["loss_plot"] = gr.Plot(label=ui_text("compare.loss_plot"))
                # Drawn when the comparison ends: each run's layers at its last epoch.
                with gr.Tab(ui_text("internals.compare.tab"), elem_id="compare-inside-tab"):
                    view["inside_plot"] = gr.Plot(label=ui_text("internals.compare.plot"),
                                                  elem_id="compare-inside-plot")
    return view


def _rows_from_table(table) -> list[dict]:
    from ..custom_comparison import CUSTOM_COLUMNS

    if table is None:
        return []
    headers = []
    if isinstance(table, dict):
        headers, table = table.get("headers") or [], table.get("data", [])
    elif hasattr(table, "columns"):  # a pandas DataFrame
        headers, table = [str(c) for c in table.columns], table.values.tolist()
    # An API caller may name its columns by their keys, in any order and only some of them; the
    # page's table (headings in the visitor's language) and an older caller's eight columns are
    # read by position.
    columns = headers if headers and set(headers) <= set(CUSTOM_COLUMNS) else CUSTOM_COLUMNS
    return [dict(zip(columns, row)) for row in table]


def _cell(column: str, value):
    """A table cell in the current language: run labels are catalogue Texts, and how runs ended
    ("completed, stopped") is said by reason (compare.ended.<reason>)."""
    if column == "ended" and isinstance(value, str) and value:
        known = catalogue("en")
        return ", ".join(t(f"compare.ended.{reason}") if f"compare.ended.{reason}" in known
                         else reason for reason in value.split(", "))
    return render(value) if isinstance(value, str) else value


def _table(rows: list[dict]):
    """The results table, its headings and cells in the current language (English for an API
    caller that asks for no other)."""
    import pandas as pd

    from ..lesson_results import SUMMARY_COLUMNS

    return pd.DataFrame([[_cell(c, row[c]) for c in SUMMARY_COLUMNS] for row in rows],
                        columns=[t(COLUMN_KEYS[c]) for c in SUMMARY_COLUMNS])


class LiveComparison:
    """What the Compare tab shows of a comparison, from its (label, seed, event) items."""

    def __init__(self, plan, data, notes=()):
        self.plan, self.data = plan, data
        self.notes = list(notes)   # said with every status: e.g. the plan was cut to the data's size
        self.configs = dict(plan.runs)
        self.histories = {label: {} for label, _ in plan.runs}   # label -> seed -> epochs
        self.ends = {label: [] for label, _ in plan.runs}
        self.current, self.dead, self.dirty = None, None, True
        self.started = time.perf_counter()

    def add(self, item) -> None:
        from ..train_config import BatchEnd, EpochEnd, RunEnd

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

    def close(self) -> None:
        pass  # its figures are sent as they are drawn: nothing is kept on disk

    def done_runs(self) -> int:
        return sum(len(ends) for ends in self.ends.values())

    def total_runs(self) -> int:
        return len(self.plan.runs) * self.plan.seeds

    def status(self) -> str:
        line = text("compare.status", done=self.done_runs(), total=self.total_runs(),
                    elapsed=format_seconds(time.perf_counter() - self.started))
        if self.current:
            label, seed, b = self.current
            line = join(line, text("compare.status_run", label=label, seed=seed, epoch=b.epoch,
                                   epochs=self.configs[label].epochs, step=b.step,
                                   total_steps=b.total_steps, images_per_sec=b.images_per_sec),
                        sep=" · ")
        return join(line, *self.notes)

    def rows(self) -> list[dict]:
        from ..lesson_results import summary_row

        return [summary_row(label, self.configs[label], ends, self.data)
                for label, ends in self.ends.items() if ends]

    def figures(self) -> tuple:
        from ..lesson_plots import mark_early_stops
        from ..lesson_results import curve_points
        from ..curve_plots import epoch_curves, learning_curve

        seeds = {label: list(by_seed.values()) for label, by_seed in self.histories.items()}
        if self.plan.curve:  # a learning curve: accuracy against training images, not epochs
            return learning_curve(curve_points(self.plan, self.ends)), epoch_curves(seeds, "loss")
        # Where early stopping ended a run, and which epoch it kept (nothing for other runs).
        drawn = [label for label, histories in seeds.items() if any(histories)]
        return mark_early_stops(epoch_curves(seeds, "acc"), self.ends, drawn), epoch_curves(seeds, "loss")

    def last_internals(self) -> dict[str, list[dict]]:
        """Each run's seeds' internals at their last epoch (train_config.EpochEnd.internals)."""
        return {label: [h[-1].get("internals") for h in by_seed.values() if h]
                for label, by_seed in self.histories.items()}

    def inside_figure(self):
        from ..lesson_plots import weight_histograms
        from ..internals_plots import layer_profile

        if self.plan.inside == "weights":
            return weight_histograms(self.last_internals())
        return layer_profile(self.last_internals())

    def frame(self, status: str, figures: bool) -> tuple:
        if not figures:
            return status, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        self.dirty = False
        # The verdict comes at the end, and so does the look inside the network.
        return (status, "", _table(self.rows()), *self.figures(), gr.skip())

    def verdict(self) -> str:
        from ..lesson_results import verdicts

        if self.plan.claim is None:
            return ""
        judged = verdicts(self.plan, self.ends, self.last_internals())
        if None in judged:
            return text("compare.no_verdict")
        # The lesson's claim as the heading; any further claims as one line each below it.
        marks = [{True: "✅", False: "⚠️", None: "ℹ️"}[v.holds] for v in judged]
        said = join(f"### {marks[0]}", judged[0].text)
        for mark, v in zip(marks[1:], judged[1:]):
            said = join(said, join(mark, v.text), sep="\n\n")
        pointer = self.plan.pointer(self.last_internals()) if self.plan.pointer else None
        return join(said, pointer, sep="\n\n")

    def final(self, stop_pressed: bool) -> tuple:
        done, total = self.done_runs(), self.total_runs()
        elapsed = format_seconds(time.perf_counter() - self.started)
        if self.dead:
            message = join(join("**", self.dead, "**", sep=""),
                           text("compare.finished_before", done=done, total=total))
        elif (stop_pressed and done < total) or any(e.reason == "stopped"
                                                    for ends in self.ends.values() for e in ends):
            message = text("compare.stopped", elapsed=elapsed, done=done, total=total)
        else:
            message = text("compare.done", total=total, runs=len(self.plan.runs),
                           seeds=self.plan.seeds, elapsed=elapsed)
        rows = self.rows()
        diverged = [r["run"] for r in rows if "diverged" in r["ended"]]
        if diverged:
            message = join(message, text("compare.diverged", runs=join(*diverged, sep=", ")))
        message = join(message, *self.notes)
        return (message, self.verdict(), _table(rows), *self.figures(), self.inside_figure())


@friendly_errors
def run_comparison(settings, lesson_name, dataset_name, size_name, custom_table,
                   request: gr.Request = None):
    """Run a comparison; yields the live overlay and, at the end, the table and the verdict.

    Runs trained before with the same settings, data and code are replayed from the run cache (a
    lesson at its default size on `shapes` ships with the app); a comparison identical to one
    waiting or training now is joined, so a class pressing the same lesson trains it once. The
    runs' checkpoints stay in the server's run cache (the Train tab replays one at once)."""
    from ..lessons import build_plan, check_requirements, fit_plan
    from ..custom_comparison import custom_plan
    from ..serving.jobs import RunSpec, job_key
    from ..serving.run_key import comparison_runs, run_key

    owner = owner_of(request)
    if lesson_name == CUSTOM:
        plan = custom_plan(_rows_from_table(custom_table), dataset_name, size_name)
    else:
        plan = build_plan(lesson_name, dataset_name, size_name)
    check_server_folder(settings, dataset_name)
    check_requirements(plan)
    check_quota(settings, owner)
    for _, config in plan.runs:
        config.data_root = settings.data_root
    # The data first: a folder is known by its contents, and a plan asking for more images than
    # the data set has uses all of them (fit_plan), which changes its runs and their keys.
    yield _line(text("compare.loading", dataset=dataset_name))
    data = run_data(plan.runs[0][1], fit_subsets=True)
    notes = fit_plan(plan, data)
    specs = [RunSpec(config, run_key(config, data), label, seed)
             for label, seed, config in comparison_runs(plan)]
    key = job_key("compare", specs)

    def replay_events(replays):
        return [spec.tag(event) for spec, replay in zip(specs, replays) for event in replay.events()]

    def final(live, replays, replayed: int, stopped: bool):
        outputs = live.final(stopped)
        return _with_note(outputs, replays[0], replayed, len(specs)) if replayed else outputs

    yield from follow_job(
        "compare", specs, request, settings, watcher=lambda: SharedComparison(plan, data, key, notes),
        replay_events=replay_events, line=_line, final=final,
        loading=text("compare.loading", dataset=dataset_name), load_data=lambda: data)


def _line(status) -> tuple:
    """The outputs while a comparison loads or waits: a status line, the rest cleared. Values,
    not gr.skip(): gradio builds a component and its API schema for each skipped output, every
    few seconds for every student of a class in line."""
    return status, "", _table([]), None, None, None


def _with_note(final: tuple, replay, replayed: int, total: int) -> tuple:
    """The final outputs, their status saying which runs were replayed rather than trained."""
    runs = (text("serving.all_runs", total=total) if replayed == total else
            text("serving.some_runs", replayed=replayed, total=total))
    status = join(final[0], replay.note(runs), text("compare.no_checkpoints"))
    return (status, *final[1:])


_SHARED = Once(size=64)


def _encoded(figure):
    """A matplotlib figure as gr.Plot sends it (encoded once, then shared by every watcher)."""
    return gr.Plot(render=False).postprocess(figure)


class SharedComparison(LiveComparison):
    """A LiveComparison whose figures and table rows are made once for every watcher of the same
    comparison at the same point (30 students replaying a lesson draw it once, not 30 times)."""

    def __init__(self, plan, data, share: str, notes=()):
        super().__init__(plan, data, notes)
        self.share = share

    def _point(self) -> tuple:
        epochs = tuple((label, seed, len(h)) for label, by_seed in self.histories.items()
                       for seed, h in by_seed.items())
        ends = tuple((label, tuple(e.reason for e in ends)) for label, ends in self.ends.items())
        return self.share, epochs, ends

    def figures(self) -> tuple:
        # Figures are labelled in the language they are drawn in: shared by watchers of one.
        return _SHARED.get(("figures", current(), self._point()),
                           lambda: tuple(_encoded(f) for f in LiveComparison.figures(self)))

    def rows(self) -> list[dict]:
        return _SHARED.get(("rows", self._point()), lambda: LiveComparison.rows(self))

    def inside_figure(self):
        return _SHARED.get(("inside", current(), self._point()),
                           lambda: _encoded(LiveComparison.inside_figure(self)))


@friendly_errors
def stop_comparison(request: gr.Request):
    if RUNS.stop(session_of(request)):
        return STOPPING
    return gr.skip()


@friendly_errors
def headings(request: gr.Request = None):
    """The empty results table, its headings in the visitor's language."""
    return _table([])


@friendly_errors
def on_lesson(name, request: gr.Request = None):
    """The lesson's question (a text the page translates, when it is a plain catalogue one), and
    the custom table when the visitor writes their own runs."""
    from ..lessons import LESSONS

    if name == CUSTOM:
        return CUSTOM_QUESTION, gr.update(visible=True)
    return static_text(LESSONS[name].question), gr.update(visible=False)


# The answer is hidden again whenever a comparison starts, and shown when the lecturer asks.
HIDE_ANSWER_JS = "(...inputs) => { document.body.classList.remove('vl-revealed'); return inputs; }"
REVEAL_ANSWER_JS = "() => { document.body.classList.add('vl-revealed'); }"


def build(settings, tab=None):
    view = layout()
    view["reveal"].click(None, js=REVEAL_ANSWER_JS)
    gr.on(None, headings, None, view["table"], queue=False, api_visibility="private")  # on load
    gr.on(None, custom_table, None, view["custom"], queue=False, api_visibility="private")
    view["lesson"].change(on_lesson, view["lesson"], [view["question"], view["custom"]],
                          queue=False, api_visibility="private")
    view["start"].click(with_settings(run_comparison, settings),
                        [view["lesson"], view["dataset"], view["size"], view["custom"]],
                        [view[name] for name in OUTPUTS], api_name="compare",
                        concurrency_limit=None, show_progress="hidden", js=HIDE_ANSWER_JS)
    view["stop"].click(stop_comparison, None, view["status"], queue=False, api_visibility="private")
    share.wire_compare(view)
