"""Test-time scaling curves of HEX majority voting, computed from a run's paths table.

The paths table has one row per question and decoding path, with the columns `question_id`,
`path_id`, `answer_key` (None or NaN when the path gave no parsable answer), `correct` and `nfe`.
Path order is ascending `path_id`. The curves run over n = 1..N, where N is the largest number of
paths any question has.

Each question votes with its own available paths. The "prefix" curve at n uses the question's
first n paths in path order, and the "random" curve the expectation over uniform random n-subsets
of them. A question with k < n paths (possible in imported runs, where some settings cover only
some questions) votes with all k of them, and its forward passes sum over those k paths only.
To compare on a fixed set of questions instead, drop the incomplete ones first with
`hexlab.paths_table.complete_questions` (`--complete-only` on the command line).

Vote rule (`hexlab.answers.vote_keys` with rule "first"): the majority over `answer_key` among
paths with an answer wins. A tie goes to the tied key that appears first in path order within the
subset. A question without any answer counts as wrong. The tie flag is set when two or more
distinct keys share the top count. The vote is correct when the first path (in path order) with
the winning key is correct.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from hexlab.paths_table import find_config_value, has_nll, load_run
from hexlab.runs.aggregate import vote_table
from hexlab.vote_arrays import METRICS, PathArrays, build_arrays, vote_in_order

__all__ = [
    "ScalingConfig",
    "bootstrap_intervals",
    "find_config_value",
    "load_run",
    "question_votes",
    "scaling_curves",
]

logger = logging.getLogger(__name__)

# Chunks of subset draws bound the vote-count buffers to a few tens of MB for 1,319 questions.
_DRAW_CHUNK = 250


@dataclass(frozen=True)
class ScalingConfig:
    """Settings of the scaling estimates.

    `draws` is the number of random subsets per question and subset size. A size with at most
    `draws` distinct subsets is enumerated exactly. `bootstrap` is the number of resamples of
    questions behind each percentile interval at level `confidence`. `max_paths` keeps only the
    lowest path ids of the run (None keeps all).
    """

    draws: int = 1000
    bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    max_paths: int | None = None

    def __post_init__(self) -> None:
        if self.draws < 1 or self.bootstrap < 1:
            raise ValueError(
                f"draws and bootstrap must be >= 1, got {self.draws}, {self.bootstrap}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")


def _prefix_values(arrays: PathArrays) -> dict[str, np.ndarray]:
    # Slots are compacted per question, so slot order is each question's own path order.
    order = np.arange(arrays.num_slots)[None, None, :]
    return vote_in_order(arrays, order)


def _random_orders(arrays: PathArrays, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `draws` random slot orders per question that put its available slots first.

    Returns shape (draws, questions, slots), int16. The first n slots of an order are a uniform
    random n-subset of the question's paths when it has at least n.
    """
    shape = (draws, *arrays.keys.shape)
    # Permuting costs less than sorting noise, so tables without missing paths permute.
    if (arrays.num_paths == arrays.num_slots).all():
        identity = np.arange(arrays.num_slots, dtype=np.int16)
        return rng.permuted(np.broadcast_to(identity, shape), axis=2)
    # Sorting uniform noise gives a uniform random order. Empty slots get noise 2.0, above every
    # draw from [0, 1), so they come last.
    noise = rng.random(shape, dtype=np.float32)
    noise[:, ~arrays.available] = 2.0
    return np.argsort(noise, axis=2).astype(np.int16)


def _enumerated_values(arrays: PathArrays, n: int) -> dict[str, np.ndarray]:
    """Average the metrics over every n-subset of each question's paths, shape (questions,).

    Questions are grouped by their number of paths k, and a question with k < n has one subset:
    all of its k paths.
    """
    values = {name: np.empty(len(arrays.num_paths)) for name in (*METRICS, "forward_passes")}
    for k in np.unique(arrays.num_paths):
        rows = np.flatnonzero(arrays.num_paths == k)
        group = arrays.take(rows)
        subsets = np.array(list(combinations(range(k), min(n, k))), dtype=np.int16)
        for name in values:
            values[name][rows] = 0.0
        for start in range(0, len(subsets), _DRAW_CHUNK):
            chunk = subsets[start : start + _DRAW_CHUNK, None, :]
            for name, chunk_values in vote_in_order(group, chunk).items():
                values[name][rows] += chunk_values[-1] * (len(chunk) / len(subsets))
    return values


def _random_values(arrays: PathArrays, config: ScalingConfig, rng: np.random.Generator) -> dict:
    """Expected per-question metrics over uniform random subsets, shape (slots, questions).

    The first n slots of one random order per draw and question are a uniform random n-subset,
    so one order serves every subset size. Sizes with at most `config.draws` subsets of N slots
    are then replaced by exact enumeration. `subsets` counts the subsets of a question with all
    N paths.
    """
    num_questions, num_slots = arrays.keys.shape
    sizes = range(1, num_slots + 1)
    exact_sizes = [n for n in sizes if math.comb(num_slots, n) <= config.draws]
    totals = {name: np.zeros((num_slots, num_questions)) for name in (*METRICS, "forward_passes")}
    if len(exact_sizes) < num_slots:
        for start in range(0, config.draws, _DRAW_CHUNK):
            chunk = min(_DRAW_CHUNK, config.draws - start)
            order = _random_orders(arrays, chunk, rng)
            for name, values in vote_in_order(arrays, order).items():
                totals[name] += values * (chunk / config.draws)

    for n in exact_sizes:
        for name, values in _enumerated_values(arrays, n).items():
            totals[name][n - 1] = values
    subset_counts = [math.comb(num_slots, n) if n in exact_sizes else config.draws for n in sizes]
    return {**totals, "subsets": np.array(subset_counts)}


def bootstrap_intervals(values: np.ndarray, config: ScalingConfig, rng: np.random.Generator):
    """Compute percentile bootstrap intervals of column means, resampling rows (questions).

    `values` has shape (questions, columns). Returns (low, high), each of shape (columns,).
    """
    num_rows = values.shape[0]
    draws = rng.integers(0, num_rows, size=(config.bootstrap, num_rows))
    offsets = np.arange(config.bootstrap)[:, None] * num_rows
    weights = np.bincount((draws + offsets).ravel(), minlength=config.bootstrap * num_rows)
    means = weights.reshape(config.bootstrap, num_rows) @ values / num_rows
    tail = (1.0 - config.confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return low, high


def _tidy_curve(values: dict, method: str, config: ScalingConfig, rng) -> pd.DataFrame:
    num_slots, num_questions = values["accuracy"].shape
    stacked = np.concatenate([values[name].T for name in METRICS], axis=1)
    low, high = bootstrap_intervals(stacked, config, rng)
    return pd.DataFrame(
        {
            "n": np.tile(np.arange(1, num_slots + 1), len(METRICS)),
            "metric": np.repeat(METRICS, num_slots),
            "estimate": stacked.mean(axis=0),
            "ci_low": low,
            "ci_high": high,
            "forward_passes": np.tile(values["forward_passes"].mean(axis=1), len(METRICS)),
            "method": method,
            "subsets": np.tile(values.get("subsets", np.ones(num_slots, int)), len(METRICS)),
            "n_questions": num_questions,
        }
    )


def scaling_curves(
    paths: pd.DataFrame,
    config: ScalingConfig | None = None,
    methods: tuple[str, ...] = ("prefix", "random"),
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Compute accuracy, tie rate and coverage against the number of paths n = 1..N.

    Method "prefix" votes with each question's first n paths in path order. Method "random" takes
    the expectation over uniform random n-subsets of each question's paths. A question with fewer
    than n paths votes with all of them (see the module docstring). Each estimate is a fraction in
    [0, 1] with a bootstrap interval over questions. That interval ignores the Monte Carlo error
    of the expectation, which shrinks with `draws` and is far below the spread across questions
    at the default 1,000 draws.
    `forward_passes` is the mean over questions of the summed `nfe` of the subset, so plotting
    against it gives the curves against compute.
    `labels` (such as {"dataset": ..., "model": ...}) become constant columns.
    """
    config = config or ScalingConfig()
    unknown = set(methods) - {"prefix", "random"}
    if unknown:
        raise ValueError(f"unknown scaling methods {sorted(unknown)}; use 'prefix' or 'random'")
    arrays = build_arrays(paths, config.max_paths)
    subset_seed, bootstrap_seed = np.random.SeedSequence(config.seed).spawn(2)
    subset_rng = np.random.default_rng(subset_seed)
    frames = []
    for method in methods:
        if method == "prefix":
            values = _prefix_values(arrays)
        else:
            values = _random_values(arrays, config, subset_rng)
        # Every method resamples the same questions, so their intervals are comparable.
        frames.append(_tidy_curve(values, method, config, np.random.default_rng(bootstrap_seed)))
    curves = pd.concat(frames, ignore_index=True)
    for column, value in (labels or {}).items():
        curves[column] = value
    return curves


def question_votes(paths: pd.DataFrame) -> pd.DataFrame:
    """Vote every question with all of its paths and return one row per question.

    Columns: question_id, voted_key, correct, tie and answered_paths, from
    `hexlab.runs.aggregate.vote_table` with tie rule "first". When some path has an NLL, the
    table adds nll_key and nll_correct, from tie rule "nll", which gives a tie to the tied key
    whose best path has the lowest NLL. It also adds selected_correct, the correctness of the
    single lowest-NLL path (the first in path order among equal NLLs). A question whose paths
    all lack an NLL has no selected path and counts as wrong.
    """
    # The shared vote table reports the winning path's answer, which the scaling input may lack.
    if "answer" not in paths.columns:
        paths = paths.assign(answer=paths["answer_key"])
    first = vote_table(paths, tie_rule="first")
    table = pd.DataFrame(
        {
            "question_id": first["question_id"],
            "voted_key": first["answer_key"],
            "correct": first["correct"].astype(bool),
            "tie": first["tie"].astype(bool),
            "answered_paths": first["n_voting"],
        }
    )
    if not has_nll(paths):
        return table

    by_nll = vote_table(paths, tie_rule="nll")
    table["nll_key"] = by_nll["answer_key"]
    table["nll_correct"] = by_nll["correct"].astype(bool)
    ordered = paths.sort_values(["question_id", "path_id"], kind="stable")
    scored = ordered[ordered["nll"].notna()]
    # idxmin returns the first row of the minimum, which is the first such path in path order.
    selected = scored.loc[scored.groupby("question_id", sort=False)["nll"].idxmin()]
    selected_correct = selected.set_index("question_id")["correct"].eq(True)
    table["selected_correct"] = selected_correct.reindex(
        table["question_id"], fill_value=False
    ).to_numpy()
    return table
