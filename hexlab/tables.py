"""Main-results, ablation and scaling tables of HEX runs, with CSV, Markdown and LaTeX export.

The summary functions return tidy frames of fractions in [0, 1] with bootstrap intervals over
questions. The `*_table` functions turn them into display tables of percentages with cells such as
"88.1 [86.4, 89.8]" and the number of questions. Markdown is written by a small local writer, so
the export needs no `tabulate` package.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from hexlab.paths_table import find_config_value, has_nll
from hexlab.scaling import ScalingConfig, bootstrap_intervals, question_votes

logger = logging.getLogger(__name__)

# Config keys that may store the generation length, which decides when a schedule is one block.
GEN_LENGTH_KEYS = ("gen_length", "generation_length", "max_new_tokens", "gen_len")
TABLE_FORMATS = {"csv": ".csv", "md": ".md", "latex": ".tex"}
KIND_ORDER = ("one_block", "schedule", "vote", "nll_selection", "vote_nll_tiebreak")
_MISSING = "-"


def find_gen_length(config: dict) -> int | None:
    """Return the generation length (tokens) stored in a run config, or None."""
    for key in GEN_LENGTH_KEYS:
        value = find_config_value(config, key)
        if value is not None:
            return int(value)
    return None


def schedule_block_size(label: object, block_sizes: object = None) -> int | None:
    """Return the block size of a schedule that uses one size throughout, else None.

    `block_sizes` (an int, a sequence or a string such as "8" or "[8, 16]") takes precedence over
    a label such as "b8" or "b8,s3". None also covers mixed sizes and labels without a size.
    """
    if block_sizes is not None and not (np.isscalar(block_sizes) and pd.isna(block_sizes)):
        text = " ".join(str(size) for size in np.ravel(block_sizes))
        sizes = {int(size) for size in re.findall(r"\d+", text)}
        return sizes.pop() if len(sizes) == 1 else None
    match = re.search(r"(?:^|[,\s])b(\d+)", str(label))
    return int(match.group(1)) if match else None


def _schedule_labels(paths: pd.DataFrame) -> pd.Series:
    if "schedule" in paths.columns:
        return paths["schedule"].astype(str)
    return "path " + paths["path_id"].astype(str)


def _block_total(block_sizes: object) -> float:
    """Return the sum of a row's block sizes (a sequence or a string such as "[8, 24]"), or NaN."""
    if block_sizes is None or (np.isscalar(block_sizes) and pd.isna(block_sizes)):
        return np.nan
    text = " ".join(str(size) for size in np.ravel(block_sizes))
    sizes = [int(size) for size in re.findall(r"\d+", text)]
    return float(sum(sizes)) if sizes else np.nan


def path_gen_lengths(paths: pd.DataFrame, gen_length: int | None) -> pd.Series:
    """Return each path's generation length in tokens, NaN where no source gives it.

    Sources, in order: the run's `gen_length` (from config.json), the paths' `gen_length`
    column, then the sum of the row's `block_sizes`, because blocks tile the answer window.
    Imported runs that mix answer lengths store no run-wide length but keep the other two.
    """
    lengths = pd.Series(np.nan, index=paths.index)
    if gen_length is not None:
        return lengths.fillna(float(gen_length))
    if "gen_length" in paths.columns:
        lengths = lengths.fillna(pd.to_numeric(paths["gen_length"], errors="coerce").astype(float))
    if "block_sizes" in paths.columns:
        lengths = lengths.fillna(paths["block_sizes"].map(_block_total))
    return lengths


def one_block_mask(paths: pd.DataFrame, gen_length: int | None) -> pd.Series:
    """Flag the paths decoded as one block: a single block as long as the generation.

    `gen_length` is the run's length when known, else each path's own (see `path_gen_lengths`).
    """
    lengths = path_gen_lengths(paths, gen_length)
    labels = _schedule_labels(paths)
    sizes = paths["block_sizes"] if "block_sizes" in paths.columns else pd.Series(None, paths.index)
    block = [schedule_block_size(label, size) for label, size in zip(labels, sizes, strict=True)]
    flags = [
        size is not None and not pd.isna(length) and size >= length
        for size, length in zip(block, lengths, strict=True)
    ]
    return pd.Series(flags, paths.index)


def _summarise(correct: pd.Series, config: ScalingConfig, rng: np.random.Generator) -> dict:
    """Return accuracy, bootstrap interval and question count of per-question correctness."""
    values = correct.to_numpy(dtype=float)[:, None]
    low, high = bootstrap_intervals(values, config, rng)
    return {
        "accuracy": values.mean(),
        "ci_low": low[0],
        "ci_high": high[0],
        "n_questions": len(values),
    }


def _collapse_rate(paths: pd.DataFrame) -> float:
    if "collapsed" not in paths.columns:
        return np.nan
    return float(paths["collapsed"].eq(True).mean())


def schedule_accuracy(
    paths: pd.DataFrame,
    config: ScalingConfig | None = None,
    gen_length: int | None = None,
) -> pd.DataFrame:
    """Compute the single-path accuracy of each schedule, in path order.

    Schedules come from the `schedule` column, or one per `path_id` without it. Several paths of
    one schedule (such as seeds) are averaged per question before averaging over questions.
    """
    config = config or ScalingConfig()
    rng = np.random.default_rng(config.seed)
    paths = paths.assign(_label=_schedule_labels(paths), _one=one_block_mask(paths, gen_length))
    order = paths.groupby("_label", sort=False)["path_id"].min().sort_values().index
    rows = []
    for label in order:
        group = paths[paths["_label"] == label]
        per_question = group.groupby("question_id")["correct"].mean()
        row = {"kind": "one_block" if group["_one"].all() else "schedule", "method": label}
        row.update(_summarise(per_question, config, rng))
        row["collapse_rate"] = _collapse_rate(group)
        row["forward_passes"] = group["nfe"].mean()
        row["n_paths"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def main_results(
    paths: pd.DataFrame,
    config: ScalingConfig | None = None,
    gen_length: int | None = None,
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Summarise a run: each schedule alone, the HEX vote over all paths and NLL-based choices.

    Kinds: "one_block" and "schedule" (single paths), "vote" (with its tie rate), and when some
    path has an NLL value, "nll_selection" (the lowest-NLL path) and "vote_nll_tiebreak".
    """
    config = config or ScalingConfig()
    rng = np.random.default_rng(config.seed)
    votes = question_votes(paths)
    forward_passes = paths.groupby("question_id")["nfe"].sum().mean()
    shared = {"collapse_rate": _collapse_rate(paths), "forward_passes": forward_passes}
    shared["n_paths"] = len(paths)

    rows = [
        {"kind": "vote", "method": "HEX vote", **_summarise(votes["correct"], config, rng)},
    ]
    rows[0]["tie_rate"] = votes["tie"].mean()
    if has_nll(paths):
        selected = _summarise(votes["selected_correct"], config, rng)
        rows.append({"kind": "nll_selection", "method": "lowest-NLL path", **selected})
        tiebreak = _summarise(votes["nll_correct"], config, rng)
        rows.append({"kind": "vote_nll_tiebreak", "method": "HEX vote, NLL tie-break", **tiebreak})
    combined = pd.DataFrame([{**row, **shared} for row in rows])

    results = pd.concat([schedule_accuracy(paths, config, gen_length), combined])
    results["kind"] = pd.Categorical(results["kind"], KIND_ORDER, ordered=True)
    results = results.sort_values("kind", kind="stable").reset_index(drop=True)
    results["kind"] = results["kind"].astype(str)
    for column, value in (labels or {}).items():
        results[column] = value
    return results


def collapse_ablation(
    paths: pd.DataFrame,
    gen_length: int | None,
    config: ScalingConfig | None = None,
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Compare one-block decoding with semi-autoregressive (semi-AR) schedules.

    Each row gives the mean single-path accuracy and the collapse rate of one decoding family.
    `gen_length` is the run's generation length, and None falls back to each path's own (see
    `path_gen_lengths`). Paths of unknown length are left out. The result is an empty frame
    unless both families have paths, because one family alone compares nothing.
    """
    config = config or ScalingConfig()
    known = path_gen_lengths(paths, gen_length).notna()
    if not known.all():
        logger.warning(
            "the collapse ablation leaves out %d paths of unknown length", (~known).sum()
        )
    one_block = one_block_mask(paths, gen_length)
    families = (("one block", paths[one_block]), ("semi-AR", paths[~one_block & known]))
    missing = [decoding for decoding, group in families if group.empty]
    if missing:
        logger.info("no %s paths of known length, so the collapse ablation is skipped", missing[0])
        return pd.DataFrame()
    rng = np.random.default_rng(config.seed)
    rows = []
    for decoding, group in families:
        per_question = group.groupby("question_id")["correct"].mean()
        row = {"decoding": decoding, **_summarise(per_question, config, rng)}
        row.update(collapse_rate=_collapse_rate(group), n_paths=len(group))
        rows.append(row)
    ablation = pd.DataFrame(rows)
    for column, value in (labels or {}).items():
        ablation[column] = value
    return ablation


def format_estimate(estimate: float, low: float | None = None, high: float | None = None) -> str:
    """Format a fraction as a percentage with one decimal and an optional interval."""
    if estimate is None or pd.isna(estimate):
        return _MISSING
    text = f"{100 * estimate:.1f}"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return text
    return f"{text} [{100 * low:.1f}, {100 * high:.1f}]"


def _number(value: float) -> str:
    return _MISSING if pd.isna(value) else f"{value:.1f}"


def _percent(values: pd.Series) -> list[str]:
    return [format_estimate(value) for value in values]


def label_columns(frame: pd.DataFrame) -> list[str]:
    """Return the label columns that distinguish the runs in a frame.

    These are "dataset" and "model" when present, plus "run" when runs share both labels.
    """
    columns = [column for column in ("dataset", "model") if column in frame.columns]
    if "run" in frame.columns:
        runs_per_label = frame.groupby(columns)["run"].nunique() if columns else frame["run"]
        if (columns and runs_per_label.max() > 1) or (not columns and frame["run"].nunique() > 1):
            columns.append("run")
    return columns


def _label_columns(frame: pd.DataFrame) -> dict[str, pd.Series]:
    return {column.capitalize(): frame[column].astype(str) for column in label_columns(frame)}


def main_results_table(results: pd.DataFrame) -> pd.DataFrame:
    """Turn `main_results` frames (one run or several concatenated) into a display table."""
    accuracy = [
        format_estimate(row.accuracy, row.ci_low, row.ci_high) for row in results.itertuples()
    ]
    tie_rate = results.get("tie_rate", pd.Series(np.nan, index=results.index))
    table = {
        **_label_columns(results),
        "Method": results["method"],
        "Accuracy (%)": accuracy,
        "Tie rate (%)": _percent(tie_rate),
        "Collapse rate (%)": _percent(results["collapse_rate"]),
        "Forward passes": [_number(value) for value in results["forward_passes"]],
        "Questions": results["n_questions"],
    }
    return pd.DataFrame(table).reset_index(drop=True)


def selection_table(results: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows of a main-results table that compare NLL selection with voting.

    Returns an empty frame when no run has NLL values, and keeps only the runs that have them.
    """
    if "nll_selection" not in set(results["kind"]):
        return pd.DataFrame()
    if "run" in results.columns:
        runs_with_nll = results.loc[results["kind"] == "nll_selection", "run"]
        results = results[results["run"].isin(runs_with_nll)]
    keep = results["kind"].isin(["vote", "nll_selection", "vote_nll_tiebreak"])
    return main_results_table(results[keep]).drop(columns=["Collapse rate (%)"])


def ablation_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """Turn `collapse_ablation` frames into a display table."""
    if ablation.empty:
        return pd.DataFrame()
    accuracy = [
        format_estimate(row.accuracy, row.ci_low, row.ci_high) for row in ablation.itertuples()
    ]
    table = {
        **_label_columns(ablation),
        "Decoding": ablation["decoding"],
        "Accuracy (%)": accuracy,
        "Collapse rate (%)": _percent(ablation["collapse_rate"]),
        "Paths": ablation["n_paths"],
        "Questions": ablation["n_questions"],
    }
    return pd.DataFrame(table).reset_index(drop=True)


def scaling_table(
    curves: pd.DataFrame,
    sizes: tuple[int, ...] | None = (5, 10, 15, 20, 25, 30),
    method: str | None = "prefix",
) -> pd.DataFrame:
    """Turn `scaling_curves` output into one row per run, method and path count n.

    `sizes` selects the path counts (None keeps all of them). `method` keeps "prefix" or
    "random" curves, and None keeps both with a Method column.
    """
    if method is not None:
        curves = curves[curves["method"] == method]
    if sizes is not None:
        curves = curves[curves["n"].isin(sizes)]
    group_columns = label_columns(curves)
    if method is None:
        group_columns.append("method")
    rows = []
    for keys, group in curves.groupby([*group_columns, "n"], sort=True):
        by_metric = group.set_index("metric")
        row = dict(zip([name.capitalize() for name in group_columns], keys[:-1], strict=True))
        row["Paths"] = keys[-1]
        for metric, title in (("accuracy", "Accuracy"), ("tie_rate", "Tie rate")):
            cell = by_metric.loc[metric]
            row[f"{title} (%)"] = format_estimate(cell.estimate, cell.ci_low, cell.ci_high)
        row["Coverage (%)"] = format_estimate(by_metric.loc["coverage", "estimate"])
        row["Forward passes"] = _number(by_metric["forward_passes"].iloc[0])
        row["Questions"] = int(by_metric["n_questions"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """Render a table as a GitHub-flavoured Markdown pipe table, without an index."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(column) for column in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.to_numpy()]
    return "\n".join([header, rule, *rows]) + "\n"


def to_latex(table: pd.DataFrame, caption: str | None = None) -> str:
    """Render a table as a LaTeX booktabs tabular, escaping LaTeX special characters."""
    return table.to_latex(index=False, escape=True, caption=caption)


def render_table(table: pd.DataFrame, fmt: str, caption: str | None = None) -> str:
    """Render a table as "csv", "md" (Markdown) or "latex" text."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "md":
        return to_markdown(table)
    if fmt == "latex":
        return to_latex(table, caption)
    raise ValueError(f"unknown table format {fmt!r}; use one of {sorted(TABLE_FORMATS)}")


def write_table(table: pd.DataFrame, stem: str | Path, fmt: str, caption: str | None = None):
    """Write a table to `stem` plus the format's suffix (.csv, .md or .tex) and return the path."""
    text = render_table(table, fmt, caption)
    path = Path(stem).with_suffix(TABLE_FORMATS[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
