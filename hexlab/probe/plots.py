"""Figures of a probe: each expert's distribution, the reference token's probability over visible
sets, and the distribution at a slot when semi-AR decoding reveals it, by block size.

Each function takes a DataFrame made by `hexlab.probe` and returns a matplotlib Figure in the
shared hexlab style, built without pyplot.
"""

from __future__ import annotations

import logging
from itertools import combinations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hexlab.figures import PALETTE, figure_style
from hexlab.probe.contexts import format_visible, parse_visible

logger = logging.getLogger(__name__)

MAX_PANELS = 16  # above this many contexts, experts are drawn as lines on one panel
REFERENCE_COLOUR = PALETTE[2]
OTHER_COLOUR = PALETTE[7]


def _select_target(frame: pd.DataFrame, target: int | None) -> tuple[pd.DataFrame, int]:
    targets = sorted(frame["target"].unique())
    if target is None:
        target = int(targets[0])
    if target not in targets:
        raise ValueError(f"target {target} is not in the frame; its targets are {targets}")
    return frame[frame["target"] == target], target


def _top_tokens(rows: pd.DataFrame, num_tokens: int) -> list[str]:
    """Pick the tokens with the highest mean probability over the contexts, reference first."""
    num_contexts = rows["context"].nunique()
    mean = rows.groupby("token")["probability"].sum() / num_contexts
    chosen = list(mean.sort_values(ascending=False).index[:num_tokens])
    references = list(rows.loc[rows["is_reference"], "token"].unique())
    others = [token for token in chosen if token not in references]
    return references + others[: max(num_tokens - len(references), 0)]


def _context_labels(rows: pd.DataFrame) -> pd.Series:
    column = "shown" if "shown" in rows.columns else "visible"
    return rows.drop_duplicates("context").set_index("context")[column].astype(str)


def plot_expert_distributions(
    tokens: pd.DataFrame, target: int | None = None, num_tokens: int = 6
) -> Figure:
    """Plot each expert's probability of the most likely candidate tokens at one target.

    `tokens` is `ProbeResult.tokens` (or `distribution_frame()`): context, target, token,
    probability and is_reference, with shown or visible to label the contexts. Up to `MAX_PANELS`
    contexts get one bar panel each, in the style of the telephone example of the HEX paper; more
    contexts become one line each over the tokens, coloured by |U|. The reference token's bars
    are green. A token outside a context's top k is drawn at 0 there.
    """
    rows, target = _select_target(tokens, target)
    candidates = _top_tokens(rows, num_tokens)
    table = rows.pivot_table(index="context", columns="token", values="probability", aggfunc="sum")
    table = table.reindex(columns=candidates).fillna(0.0)  # (N, tokens)
    labels = _context_labels(rows)
    colours = [
        REFERENCE_COLOUR if token in set(rows.loc[rows["is_reference"], "token"]) else PALETTE[0]
        for token in candidates
    ]
    names = [repr(token) if token != token.strip() or not token else token for token in candidates]
    with figure_style():
        if len(table) <= MAX_PANELS:
            return _expert_panels(table, labels, names, colours, target)
        return _expert_lines(
            table, rows.drop_duplicates("context").set_index("context")["size"], names, target
        )


def _expert_panels(
    table: pd.DataFrame, labels: pd.Series, names: list[str], colours: list, target: int
) -> Figure:
    columns = min(4, len(table))
    panel_rows = -(-len(table) // columns)
    figure = Figure(figsize=(2.4 * columns, 1.9 * panel_rows + 0.4), layout="constrained")
    grid = figure.subplots(panel_rows, columns, squeeze=False, sharey=True)
    for axes, (context, probabilities) in zip(grid.flat, table.iterrows(), strict=False):
        axes.bar(np.arange(len(names)), probabilities.to_numpy(), color=colours)
        axes.set_xticks(np.arange(len(names)), names, rotation=45, ha="right")
        axes.set_title(labels[context], fontsize="small")
        axes.set_ylim(0, 1)
    for axes in grid.flat[len(table) :]:
        axes.set_visible(False)
    for axes in grid[:, 0]:
        axes.set_ylabel("Probability")
    figure.suptitle(f"Experts at answer position {target}, one panel per visible set")
    return figure


def _expert_lines(table: pd.DataFrame, sizes: pd.Series, names: list[str], target: int) -> Figure:
    figure = Figure(figsize=(1.0 + 0.9 * len(names), 3.2), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(names))
    largest = max(int(sizes.max()), 1)
    colour_map = mpl.colormaps["viridis"]
    for context, probabilities in table.iterrows():
        axes.plot(
            x,
            probabilities.to_numpy(),
            color=colour_map(sizes[context] / largest),
            alpha=max(0.05, min(0.6, 20 / len(table))),
            linewidth=0.8,
        )
    axes.plot(x, table.mean().to_numpy(), color="black", linewidth=2, label="uniform mixture")
    axes.set_xticks(x, names, rotation=45, ha="right")
    axes.set_ylabel("Probability")
    axes.set_ylim(0, 1)
    axes.set_title(f"{len(table)} experts at answer position {target}, coloured by |U|")
    axes.legend(loc="upper right")
    size_scale = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, largest), cmap=colour_map)
    figure.colorbar(size_scale, ax=axes, label="visible tokens |U|")
    return figure


def _ordered_subsets(positions: tuple[int, ...]) -> list[tuple[int, ...]]:
    """List all subsets of `positions`, by size and then in lexicographic order."""
    return [s for size in range(len(positions) + 1) for s in combinations(positions, size)]


def plot_reference_heatmap(
    experts: pd.DataFrame, target: int | None = None, candidates: tuple[int, ...] | None = None
) -> Figure:
    """Plot the reference token's probability for every visible set as a grid.

    `experts` is `ProbeResult.experts` (visible, target, reference_probability). The candidates
    (by default every position that some context shows) split into two halves: the row is the
    subset of the first half that is shown, the column the subset of the second half, so each
    cell is one context. Cells of contexts not probed (sampling) stay blank.
    """
    rows, target = _select_target(experts, target)
    shown_sets = rows["visible"].map(parse_visible)
    if candidates is None:
        candidates = tuple(sorted({p for s in shown_sets for p in s}))
    half = (len(candidates) + 1) // 2
    row_sets = _ordered_subsets(candidates[:half])
    column_sets = _ordered_subsets(candidates[half:])
    row_index = {s: i for i, s in enumerate(row_sets)}
    column_index = {s: i for i, s in enumerate(column_sets)}
    grid = np.full((len(row_sets), len(column_sets)), np.nan)
    for shown, probability in zip(shown_sets, rows["reference_probability"], strict=True):
        first = tuple(p for p in shown if p in candidates[:half])
        second = tuple(p for p in shown if p not in first)
        grid[row_index[first], column_index[second]] = probability
    with figure_style():
        width = min(12.0, 2.5 + 0.35 * len(column_sets))
        figure = Figure(figsize=(width, min(10.0, 1.5 + 0.3 * len(row_sets))), layout="constrained")
        axes = figure.subplots()
        image = axes.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axes.grid(False)
        _label_axis(axes.set_yticks, row_sets)
        _label_axis(axes.set_xticks, column_sets, rotation=90)
        if grid.size <= 64:
            for (i, j), value in np.ndenumerate(grid):
                if not np.isnan(value):
                    axes.text(
                        j,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="white" if value < 0.5 else "black",
                    )
        axes.set_ylabel(f"shown among {format_visible(candidates[:half])}")
        axes.set_xlabel(f"shown among {format_visible(candidates[half:])}")
        axes.set_title(f"Reference token probability at answer position {target}")
        figure.colorbar(image, ax=axes, label="probability")
    return figure


def _label_axis(set_ticks, subsets: list[tuple[int, ...]], rotation: int = 0) -> None:
    # NOTE: beyond 32 subsets per axis the labels would overlap, so only the ticks remain.
    if len(subsets) <= 32:
        set_ticks(
            np.arange(len(subsets)),
            [format_visible(s) for s in subsets],
            rotation=rotation,
            fontsize="x-small",
        )
    else:
        set_ticks([])


def plot_block_size_sweep(
    sweep: pd.DataFrame, target: int | None = None, num_tokens: int = 5
) -> Figure:
    """Plot the distribution at a slot when it is revealed, one stacked bar per block size.

    `sweep` has columns block_size, target, token, probability and is_reference, and optionally
    seed (see `hexlab.probe.sweep.block_size_sweep`); the seeds of a block size are averaged. The
    `num_tokens` most probable tokens over all block sizes get their own colour, the reference
    token green; the rest of the mass is grey.
    """
    rows, target = _select_target(sweep, target)
    rows = rows.assign(context=rows["block_size"])
    tokens = _top_tokens(rows, num_tokens)
    table = rows.pivot_table(
        index="block_size", columns="token", values="probability", aggfunc="sum"
    ).fillna(0.0)
    # several seeds per block size are averaged
    seeds = rows.groupby("block_size")["seed"].nunique() if "seed" in rows.columns else 1
    table = table.div(seeds, axis=0).reindex(columns=tokens).fillna(0.0)  # (block sizes, tokens)
    other = (1.0 - table.sum(axis=1)).clip(lower=0.0)
    references = set(rows.loc[rows["is_reference"], "token"])
    colours = iter(c for i, c in enumerate(PALETTE) if i not in (2, 7))
    with figure_style():
        figure = Figure(figsize=(3.5 + 0.5 * len(table), 3.0), layout="constrained")
        axes = figure.subplots()
        x = np.arange(len(table))
        bottom = np.zeros(len(table))
        for token in tokens:
            colour = REFERENCE_COLOUR if token in references else next(colours)
            name = repr(token) if token != token.strip() else token
            label = f"{name} (reference)" if token in references else name
            axes.bar(x, table[token], bottom=bottom, color=colour, label=label)
            bottom += table[token].to_numpy()
        axes.bar(x, other, bottom=bottom, color=OTHER_COLOUR, label="other tokens")
        axes.set_xticks(x, [str(b) for b in table.index])
        axes.set_xlabel("Block size")
        axes.set_ylabel("Probability when revealed")
        axes.set_ylim(0, 1)
        axes.set_title(f"Answer position {target}")
        figure.legend(loc="outside right upper")
    return figure
