"""From path texts to graded paths, per-question votes and run metrics.

`hexlab run` and `hexlab import` both go through these functions, so a decoded run and an imported
one are graded, voted and summarised the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hexlab.answers import extract, is_collapsed, is_correct, vote_keys


def grade_texts(
    task: str,
    texts: Sequence[str],
    golds: Sequence[str],
    labels: Sequence[Sequence[str] | None] | None = None,
) -> pd.DataFrame:
    """Parse and grade each text; columns answer, answer_key, correct, collapsed.

    Multiple-choice rows pass their option labels so that only real options count as answers.
    """
    labels = labels if labels is not None else [None] * len(texts)
    rows = []
    for text, gold, options in zip(texts, golds, labels, strict=True):
        answer = extract(task, text, list(options) if options is not None else None)
        rows.append(
            {
                "answer": answer.text if answer else None,
                "answer_key": answer.key if answer else None,
                "correct": is_correct(task, answer, gold) if answer else False,
                "collapsed": is_collapsed(text),
            }
        )
    return pd.DataFrame(rows, columns=["answer", "answer_key", "correct", "collapsed"])


def vote_table(paths: pd.DataFrame, tie_rule: str = "first", seed: int = 0) -> pd.DataFrame:
    """One row per question: the vote over its paths in path_id order.

    Columns: question_id, gold, answer, answer_key, correct, tie, n_paths, n_voting,
    answer_counts (a JSON-style dict of vote key to count).
    """
    rows = []
    ordered = paths.sort_values(["question_id", "path_id"], kind="stable")
    for question_id, group in ordered.groupby("question_id", sort=False):
        keys = [None if _missing(k) else k for k in group["answer_key"]]
        nlls = group["nll"].tolist() if "nll" in group and tie_rule == "nll" else None
        result = vote_keys(keys, rule=tie_rule, nlls=nlls, seed=seed)
        winner = group.iloc[result.first_index] if result.first_index is not None else None
        rows.append(
            {
                "question_id": question_id,
                "gold": group["gold"].iloc[0] if "gold" in group else None,
                "answer": winner["answer"] if winner is not None else None,
                "answer_key": result.key,
                "correct": bool(winner["correct"]) if winner is not None else False,
                "tie": result.tie,
                "n_paths": len(group),
                "n_voting": result.n_voting,
                "answer_counts": dict(result.counts),
            }
        )
    votes = pd.DataFrame(rows)
    votes["answer_counts"] = votes["answer_counts"].map(
        lambda counts: ", ".join(f"{k}: {v}" for k, v in counts.items())
    )
    return votes


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def run_metrics(paths: pd.DataFrame, votes: pd.DataFrame) -> dict:
    """Accuracy, tie rate, collapse rate, per-schedule single-path accuracy and forward passes."""
    per_schedule = (
        paths.groupby("schedule", sort=False)["correct"].mean().round(6).to_dict()
        if "schedule" in paths
        else {}
    )
    metrics = {
        "n_questions": int(len(votes)),
        "n_paths": int(len(paths)),
        "accuracy": float(votes["correct"].mean()),
        "tie_rate": float(votes["tie"].mean()),
        "coverage": float(paths.groupby("question_id")["correct"].any().mean()),
        "mean_single_path_accuracy": float(paths["correct"].mean()),
        "collapse_rate": float(paths["collapsed"].mean()),
        "single_path_accuracy": per_schedule,
    }
    if "nfe" in paths and paths["nfe"].notna().any():
        metrics["forward_passes"] = int(paths["nfe"].sum())
        metrics["forward_passes_per_question"] = float(
            paths.groupby("question_id")["nfe"].sum().mean()
        )
    if "nll" in paths and paths["nll"].notna().any():
        metrics["nll_selection_accuracy"] = float(_lowest_nll_accuracy(paths))
    return metrics


def _lowest_nll_accuracy(paths: pd.DataFrame) -> float:
    """Accuracy when each question keeps the answer of its lowest-NLL path."""
    with_nll = paths[paths["nll"].notna()]
    best = with_nll.loc[with_nll.groupby("question_id")["nll"].idxmin()]
    return float(np.mean(best["correct"].to_numpy()))
