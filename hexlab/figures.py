"""Figures of HEX runs: scaling curves, main results and ablations.

Every plot function takes a DataFrame made by `hexlab.scaling` or `hexlab.tables` and returns a
matplotlib Figure built without pyplot, so no global figure state leaks between calls. All figures
share one style and seaborn's colour-blind-safe "colorblind" palette. `save_figure` writes PNG
and PDF by default. The decoding-trajectory heatmap lives in `hexlab.trajectory_figure`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from hexlab.tables import label_columns

logger = logging.getLogger(__name__)

PALETTE = sns.color_palette("colorblind")
FORMATS = ("png", "pdf")
METRIC_TITLES = {"accuracy": "Accuracy", "tie_rate": "Tie rate", "coverage": "Coverage"}
DATASET_TITLES = {
    "gsm8k": "GSM8K",
    "math500": "MATH500",
    "arc_challenge": "ARC-C",
    "truthfulqa": "TruthfulQA",
}
_DATASET_ALIASES = {"gsm8k": "gsm8k", "math500": "math500", "arcc": "arc_challenge"}
_DATASET_ALIASES.update(arcchallenge="arc_challenge", truthfulqa="truthfulqa")

PAPER_REFERENCE_SOURCE = "HEX paper, LLaDA-8B-Instruct"
# Accuracy and tie rate (%) of HEX voting over 5, 10, ..., 30 paths, as reported in the HEX paper
# for LLaDA-8B-Instruct.
_PAPER_NUMBERS = {
    "gsm8k": ((82.2, 85.8, 87.2, 87.8, 88.1, 88.1), (4.1, 4.4, 2.5, 2.5, 1.4, 1.1)),
    "math500": ((38.4, 37.8, 38.8, 39.0, 40.0, 40.8), (16.0, 18.2, 11.6, 7.8, 10.2, 8.6)),
    "arc_challenge": ((74.6, 81.9, 85.8, 87.0, 87.3, 87.8), (3.0, 3.5, 1.7, 0.9, 1.3, 1.3)),
    "truthfulqa": ((46.0, 51.6, 54.2, 55.8, 56.7, 57.5), (4.3, 7.9, 4.4, 3.7, 2.6, 2.6)),
}
PAPER_REFERENCE = pd.DataFrame(
    [
        (dataset, n, accuracy, tie_rate)
        for dataset, (accuracies, tie_rates) in _PAPER_NUMBERS.items()
        for n, accuracy, tie_rate in zip(range(5, 31, 5), accuracies, tie_rates, strict=True)
    ],
    columns=["dataset", "n", "accuracy", "tie_rate"],
)
PAPER_REFERENCE["source"] = PAPER_REFERENCE_SOURCE


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the shared figure style while the block creates figures and axes."""
    rc = {"axes.prop_cycle": mpl.cycler(color=PALETTE), "savefig.dpi": 200, "pdf.fonttype": 42}
    axes_style = sns.axes_style("whitegrid")
    context = sns.plotting_context("paper", font_scale=1.1)
    with axes_style, context, mpl.rc_context(rc):
        yield


def save_figure(figure: Figure, stem: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write a figure as `stem` plus each suffix of `formats` (default PNG and PDF).

    Returns the written paths.
    """
    unknown = set(formats) - set(FORMATS + ("svg",))
    if unknown:
        raise ValueError(f"unknown figure formats {sorted(unknown)}; use png, pdf or svg")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in formats:
        path = stem.with_suffix(f".{suffix}")
        figure.savefig(path, bbox_inches="tight")
        written.append(path)
    logger.debug("wrote %s", ", ".join(str(path) for path in written))
    return written


def normalise_dataset(name: object) -> str:
    """Map a dataset name such as "GSM8K" or "arc-challenge" to the reference table's key."""
    compact = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return _DATASET_ALIASES.get(compact, str(name))


def _panel_labels(frame: pd.DataFrame) -> pd.Series:
    """Label each row by dataset, adding model and run names only where they distinguish runs."""
    if "dataset" in frame.columns:
        labels = frame["dataset"].map(
            lambda name: DATASET_TITLES.get(normalise_dataset(name), name)
        )
    else:
        labels = pd.Series("run", index=frame.index)
    columns = label_columns(frame)
    for column in ("model", "run"):
        if column in columns and frame[column].nunique() > 1:
            labels = labels.astype(str) + "\n" + frame[column].astype(str)
    return labels.astype(str)


def _plot_reference(axes, dataset: object, metric: str) -> None:
    reference = PAPER_REFERENCE[PAPER_REFERENCE["dataset"] == normalise_dataset(dataset)]
    if reference.empty or metric not in reference.columns:
        return
    axes.scatter(
        reference["n"],
        reference[metric] / 100.0,
        marker="D",
        color="black",
        s=18,
        zorder=3,
        label=PAPER_REFERENCE_SOURCE,
    )


def _draw_lines(axes, curves: pd.DataFrame, x: str, colours: dict) -> None:
    """Draw one estimate line with its confidence band per `_line` label of the curves."""
    for line, group in curves.groupby("_line", sort=False):
        group, colour = group.sort_values(x), colours[line]
        axes.plot(group[x], group["estimate"], color=colour, label=line)
        axes.fill_between(group[x], group["ci_low"], group["ci_high"], color=colour, alpha=0.2)


def plot_scaling_curves(
    curves: pd.DataFrame,
    metrics: tuple[str, ...] = ("accuracy", "tie_rate"),
    methods: tuple[str, ...] = ("prefix",),
    x: str = "n",
    paper_reference: bool = False,
) -> Figure:
    """Plot metrics against paths (`x="n"`) or forward passes (`x="forward_passes"`).

    One column of panels per dataset and one row per metric, with a line and confidence band for
    each model and method. With `paper_reference`, the HEX paper's LLaDA-8B-Instruct numbers
    appear as black diamonds on the panels of matching datasets when `x` is "n".
    """
    curves = curves[curves["method"].isin(methods)]
    if curves.empty:
        raise ValueError(f"no scaling curves for the methods {list(methods)}")
    curves = curves.assign(_panel=_panel_labels(curves))
    panels = list(dict.fromkeys(curves["_panel"]))
    models = curves["model"] if "model" in curves.columns else pd.Series("", index=curves.index)
    curves = curves.assign(_line=(models.astype(str) + " " + curves["method"]).str.strip())
    colours = dict(zip(dict.fromkeys(curves["_line"]), PALETTE, strict=False))
    with figure_style():
        figure = Figure(figsize=(3.2 * len(panels), 2.6 * len(metrics)), layout="constrained")
        grid = figure.subplots(len(metrics), len(panels), squeeze=False, sharex="col")
        for column, panel in enumerate(panels):
            for row, metric in enumerate(metrics):
                axes = grid[row, column]
                selected = curves[(curves["_panel"] == panel) & (curves["metric"] == metric)]
                _draw_lines(axes, selected, x, colours)
                if paper_reference and x == "n" and not selected.empty:
                    _plot_reference(
                        axes, selected.get("dataset", pd.Series([None])).iloc[0], metric
                    )
                axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
                axes.set_title(panel if row == 0 else "")
                axes.set_ylabel(METRIC_TITLES.get(metric, metric) if column == 0 else "")
                if x == "n":
                    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
                if row == len(metrics) - 1:
                    axes.set_xlabel("Paths" if x == "n" else "Forward passes per question")
        legend = {}
        for axes in grid.flat:
            legend.update(zip(*reversed(axes.get_legend_handles_labels()), strict=True))
        figure.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=3)
    return figure


def _grouped_bars(axes, frame: pd.DataFrame, group: str, hue: str, value: str) -> None:
    """Draw bars of `value` for each `group`, one coloured bar per `hue`, with CI error bars.

    Error bars come from `ci_low`/`ci_high` when the value is "accuracy".
    """
    groups = list(dict.fromkeys(frame[group]))
    hues = list(dict.fromkeys(frame[hue]))
    width = 0.8 / len(hues)
    for index, (colour, name) in enumerate(zip(PALETTE, hues, strict=False)):
        rows = frame[frame[hue] == name].set_index(group).reindex(groups)
        positions = np.arange(len(groups)) + (index - (len(hues) - 1) / 2) * width
        errors = None
        if value == "accuracy":
            errors = [rows[value] - rows["ci_low"], rows["ci_high"] - rows[value]]
        axes.bar(positions, rows[value], width, yerr=errors, color=colour, label=name, capsize=2)
    axes.set_xticks(np.arange(len(groups)), groups)
    axes.set_ylim(bottom=0.0)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def plot_main_results(results: pd.DataFrame) -> Figure:
    """Plot single-path accuracy of one-block baselines and each schedule next to the HEX vote.

    Takes `hexlab.tables.main_results` output (several runs concatenated give one panel each).
    Bars are horizontal, coloured by kind, with bootstrap confidence intervals.
    """
    bars = results[results["kind"].isin(["one_block", "schedule", "vote"])]
    if bars.empty:
        raise ValueError("main results hold no schedule or vote rows")
    bars = bars.assign(_panel=_panel_labels(bars))
    panels = list(dict.fromkeys(bars["_panel"]))
    colours = {"one_block": PALETTE[3], "schedule": PALETTE[0], "vote": PALETTE[2]}
    titles = {"one_block": "one block", "schedule": "semi-AR schedule", "vote": "HEX vote"}
    height = 1.0 + 0.22 * bars.groupby("_panel").size().max()
    with figure_style():
        figure = Figure(figsize=(3.6 * len(panels), height), layout="constrained")
        grid = figure.subplots(1, len(panels), squeeze=False)
        for axes, panel in zip(grid[0], panels, strict=True):
            rows = bars[bars["_panel"] == panel].reset_index(drop=True)
            errors = [rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]]
            positions = np.arange(len(rows))[::-1]
            bar_colours = [colours[kind] for kind in rows["kind"]]
            axes.barh(positions, rows["accuracy"], xerr=errors, color=bar_colours, capsize=2)
            axes.set_yticks(positions, rows["method"])
            axes.set_xlim(left=0.0)
            axes.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            axes.set_title(panel)
            axes.set_xlabel("Accuracy")
        kinds = [kind for kind in colours if kind in set(bars["kind"])]
        handles = [Patch(color=colours[kind], label=titles[kind]) for kind in kinds]
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return figure


def plot_collapse_ablation(ablation: pd.DataFrame) -> Figure:
    """Plot accuracy and collapse rate of one-block against semi-AR decoding.

    Takes `hexlab.tables.collapse_ablation` output, one group of bars per dataset (and model).
    """
    if ablation.empty:
        raise ValueError(
            "the collapse ablation is empty because no run has both one-block and semi-AR paths "
            "of known generation length"
        )
    frame = ablation.assign(_panel=_panel_labels(ablation))
    with figure_style():
        width = 1.5 + 1.2 * frame["_panel"].nunique()
        figure = Figure(figsize=(2 * width, 2.8), layout="constrained")
        accuracy_axes, collapse_axes = figure.subplots(1, 2)
        _grouped_bars(accuracy_axes, frame, "_panel", "decoding", "accuracy")
        accuracy_axes.set_ylabel("Accuracy")
        _grouped_bars(collapse_axes, frame, "_panel", "decoding", "collapse_rate")
        collapse_axes.set_ylabel("Collapse rate")
        handles, labels = accuracy_axes.get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return figure


def plot_selection_vs_voting(results: pd.DataFrame) -> Figure:
    """Plot accuracy of lowest-NLL selection, the HEX vote and the vote with NLL tie-break."""
    kinds = ["nll_selection", "vote", "vote_nll_tiebreak"]
    frame = results[results["kind"].isin(kinds)]
    if "nll_selection" not in set(frame["kind"]):
        raise ValueError("likelihood selection needs NLL values in the paths table")
    frame = frame.assign(_panel=_panel_labels(frame))
    # Runs without NLL values (imported ones) have only a vote bar, so their panels are left out.
    panels_with_nll = frame.loc[frame["kind"] == "nll_selection", "_panel"]
    frame = frame[frame["_panel"].isin(panels_with_nll)]
    with figure_style():
        figure = Figure(figsize=(1.5 + 1.8 * frame["_panel"].nunique(), 2.8), layout="constrained")
        axes = figure.subplots()
        _grouped_bars(axes, frame, "_panel", "method", "accuracy")
        axes.set_ylabel("Accuracy")
        handles, labels = axes.get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return figure
