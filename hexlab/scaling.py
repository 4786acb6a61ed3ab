"""Test-time scaling curves of HEX majority voting, computed from a run's paths table.

The paths table has one row per question and decoding path, with the columns `question_id`,
`path_id`, `answer_key` (None or NaN when the path gave no parsable answer), `correct` and `nfe`.
Path order is ascending `path_id`, and `n` counts path slots, meaning the distinct `path_id`
values of the whole run. A question that lacks some path ids (possible in imported runs) treats
them as absent: a subset of `n` slots votes with only the paths that exist, and its forward
passes sum over those paths only.

Vote rule: the majority over `answer_key` among paths with an answer wins. A tie goes to the tied
key that appears first in path order within the subset. A question without any answer counts as
wrong. The tie flag is set when two or more distinct keys share the top count. The vote is correct
when the first path (in path order) with the winning key is correct.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("question_id", "path_id", "answer_key", "correct", "nfe")
METRICS = ("accuracy", "tie_rate", "coverage")
# Chunks of subset draws bound the vote-count buffers to a few tens of MB for 1,319 questions.
_DRAW_CHUNK = 250


@dataclass(frozen=True)
class ScalingConfig:
    """Settings of the scaling estimates.

    `draws` is the number of random subsets per question and subset size. A size with at most
    `draws` distinct subsets is enumerated exactly. `bootstrap` is the number of resamples of
    questions behind each percentile interval at level `confidence`. `max_paths` keeps only the
    first path slots (None keeps all).
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


def load_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read `paths.parquet` and `config.json` of a run directory and check the paths columns."""
    run_dir = Path(run_dir)
    hint = "run `hexlab run` or `hexlab import` to create it"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir} ({hint})")
    paths_file = run_dir / "paths.parquet"
    if not paths_file.is_file():
        raise FileNotFoundError(f"paths table not found: {paths_file} ({hint})")
    paths = pd.read_parquet(paths_file)
    missing = [column for column in REQUIRED_COLUMNS if column not in paths.columns]
    if missing:
        raise ValueError(f"{paths_file} lacks the columns {missing} ({hint})")

    config_file = run_dir / "config.json"
    config: dict = {}
    if config_file.is_file():
        config = json.loads(config_file.read_text())
    else:
        logger.warning("no config.json in %s, so dataset and model are unknown", run_dir)
    return paths, config


def find_config_value(config: dict, key: str) -> object | None:
    """Return the first value stored under `key` at any depth of a nested config.

    A dict value such as {"name": "gsm8k", ...} is reduced to its "name" or "id" entry.
    """
    queue = [config]
    while queue:
        node = queue.pop(0)
        if key in node:
            value = node[key]
            if isinstance(value, dict):
                return value.get("name", value.get("id"))
            return value
        queue.extend(value for value in node.values() if isinstance(value, dict))
    return None


@dataclass(frozen=True)
class PathArrays:
    """Paths table as dense (question, slot) arrays.

    `keys` contains per-question answer codes numbered by first appearance in path order, with -1
    for no answer or an absent path. `key_correct` has one spare last column of False, which the
    "no winner" code -1 indexes.
    """

    question_ids: np.ndarray
    keys: np.ndarray
    present: np.ndarray
    correct: np.ndarray
    nfe: np.ndarray
    key_correct: np.ndarray

    @property
    def num_slots(self) -> int:
        return self.keys.shape[1]

    @property
    def num_keys(self) -> int:
        return self.key_correct.shape[1] - 1


def _key_codes(question_codes: np.ndarray, answer_keys: np.ndarray) -> tuple:
    """Number answer keys per question by first appearance and return (global, local) codes.

    Rows must be sorted by question, so each question's keys get consecutive global codes, and
    subtracting the question's lowest code numbers them from 0.
    """
    global_codes, _ = pd.factorize(pd.MultiIndex.from_arrays([question_codes, answer_keys]))
    lowest = pd.Series(global_codes).groupby(question_codes).transform("min").to_numpy()
    return global_codes, global_codes - lowest


def build_arrays(paths: pd.DataFrame, max_paths: int | None = None) -> PathArrays:
    """Convert a paths table into `PathArrays`, keeping the first `max_paths` slots if given."""
    if paths.empty:
        raise ValueError("the paths table has no rows")
    if paths.duplicated(["question_id", "path_id"]).any():
        raise ValueError("the paths table repeats a (question_id, path_id) pair")
    slot_ids = np.sort(paths["path_id"].unique())
    if max_paths is not None:
        slot_ids = slot_ids[:max_paths]
    table = paths[paths["path_id"].isin(slot_ids)]
    question_codes, question_ids = pd.factorize(table["question_id"], sort=True)
    table = table.assign(_q=question_codes, _s=np.searchsorted(slot_ids, table["path_id"]))
    table = table.sort_values(["_q", "_s"], kind="stable")
    q, s = table["_q"].to_numpy(), table["_s"].to_numpy()
    shape = (len(question_ids), len(slot_ids))

    answered = table["answer_key"].notna().to_numpy()
    global_codes, local_codes = _key_codes(q[answered], table["answer_key"].to_numpy()[answered])
    keys = np.full(shape, -1, dtype=np.int16)
    keys[q[answered], s[answered]] = local_codes

    correct = np.zeros(shape, dtype=bool)
    # A missing correctness value counts as wrong.
    correct[q, s] = table["correct"].eq(True).to_numpy()
    nfe = np.zeros(shape)
    nfe[q, s] = table["nfe"].to_numpy(dtype=float)
    present = np.zeros(shape, dtype=bool)
    present[q, s] = True

    num_keys = int(keys.max()) + 1
    key_correct = np.zeros((shape[0], num_keys + 1), dtype=bool)
    _, first_rows = np.unique(global_codes, return_index=True)
    answered_q, answered_s = q[answered], s[answered]
    rows_q, rows_s = answered_q[first_rows], answered_s[first_rows]
    key_correct[rows_q, keys[rows_q, rows_s]] = correct[rows_q, rows_s]
    return PathArrays(np.asarray(question_ids), keys, present, correct, nfe, key_correct)


class _RunningVote:
    """Votes of many subsets per question, each grown by one path per `add` call.

    Arrays have shape (streams, questions). Vote counts and each key's first slot live in flat
    buffers indexed by (stream, question, key), where the last key column takes paths without an
    answer and so never wins.
    """

    def __init__(self, arrays: PathArrays, streams: int) -> None:
        num_questions, self.num_keys = arrays.keys.shape[0], arrays.num_keys + 1
        self.arrays, shape = arrays, (streams, num_questions)
        self.rows = np.arange(num_questions)[None, :]
        # Flat offsets of each question's first slot. np.take on flat indices ran about 40%
        # faster than two-dimensional fancy indexing in benchmarks/scale.py.
        self.row_offsets = self.rows * arrays.num_slots
        self.flat_keys, self.flat_correct = arrays.keys.ravel(), arrays.correct.ravel()
        self.flat_nfe = arrays.nfe.ravel()
        self.base = (np.arange(streams)[:, None] * num_questions + self.rows) * self.num_keys
        self.counts = np.zeros(streams * num_questions * self.num_keys, dtype=np.int32)
        self.first = np.full_like(self.counts, np.iinfo(np.int32).max)
        self.top = np.zeros(shape, dtype=np.int32)
        self.keys_at_top = np.zeros(shape, dtype=np.int32)
        self.winner = np.full(shape, -1, dtype=np.int32)
        self.winner_first = np.full(shape, np.iinfo(np.int32).max, dtype=np.int32)
        self.covered = np.zeros(shape, dtype=bool)
        self.spent = np.zeros(shape)

    def add(self, slot: np.ndarray) -> None:
        """Add the path at `slot` (shape (streams, questions)) to every subset."""
        path = self.row_offsets + slot
        key = self.flat_keys.take(path)
        answered = key >= 0
        key = np.where(answered, key, self.num_keys - 1)
        index = self.base + key
        count = self.counts.take(index) + 1
        self.counts.put(index, count)
        first_slot = np.minimum(self.first.take(index), slot)
        self.first.put(index, first_slot)

        # Only the added key changed, so it either overtakes the current winner or not.
        is_winner = key == self.winner
        ties_winner = (count == self.top) & (first_slot < self.winner_first)
        beats = answered & ~is_winner & ((count > self.top) | ties_winner)
        raises_top = answered & (count > self.top)
        joins_top = answered & (count == self.top) & ~is_winner
        self.keys_at_top = np.where(raises_top, 1, self.keys_at_top + joins_top)
        self.top = np.where(raises_top, count, self.top)
        keeps_first = beats | (answered & is_winner)
        self.winner_first = np.where(keeps_first, first_slot, self.winner_first)
        self.winner = np.where(beats, key, self.winner)

        self.covered |= self.flat_correct.take(path)
        self.spent += self.flat_nfe.take(path)

    def metrics(self) -> dict[str, np.ndarray]:
        """Return per-question metrics averaged over streams, each of shape (questions,)."""
        return {
            "accuracy": self.arrays.key_correct[self.rows, self.winner].mean(axis=0),
            "tie_rate": (self.keys_at_top >= 2).mean(axis=0),
            "coverage": self.covered.mean(axis=0),
            "forward_passes": self.spent.mean(axis=0),
        }


def _vote_in_order(arrays: PathArrays, slot_order: np.ndarray) -> dict[str, np.ndarray]:
    """Add paths one slot at a time and return per-question metrics after each step.

    `slot_order` has shape (streams, questions or 1, steps): stream i adds slot
    `slot_order[i, q, t]` at step t, and every stream is a subset grown in its own order.
    Returns arrays of shape (steps, questions) averaged over streams.
    """
    streams, _, steps = slot_order.shape
    num_questions = arrays.keys.shape[0]
    order = np.broadcast_to(slot_order, (streams, num_questions, steps))
    vote = _RunningVote(arrays, streams)
    result = {name: np.empty((steps, num_questions)) for name in (*METRICS, "forward_passes")}
    for step in range(steps):
        vote.add(order[:, :, step])
        for name, values in vote.metrics().items():
            result[name][step] = values
    return result


def _prefix_values(arrays: PathArrays) -> dict[str, np.ndarray]:
    order = np.arange(arrays.num_slots)[None, None, :]
    return _vote_in_order(arrays, order)


def _random_values(arrays: PathArrays, config: ScalingConfig, rng: np.random.Generator) -> dict:
    """Expected per-question metrics over uniform random subsets, shape (slots, questions).

    A uniform random permutation's first n slots are a uniform random n-subset, so one
    permutation per draw and question serves every subset size. Sizes with at most
    `config.draws` subsets are then replaced by exact enumeration.
    """
    num_questions, num_slots = arrays.keys.shape
    sizes = range(1, num_slots + 1)
    exact_sizes = [n for n in sizes if math.comb(num_slots, n) <= config.draws]
    totals: dict[str, np.ndarray] = {}
    if len(exact_sizes) < num_slots:
        identity = np.arange(num_slots, dtype=np.int16)
        for start in range(0, config.draws, _DRAW_CHUNK):
            chunk = min(_DRAW_CHUNK, config.draws - start)
            shape = (chunk, num_questions, num_slots)
            order = rng.permuted(np.broadcast_to(identity, shape), axis=2)
            for name, values in _vote_in_order(arrays, order).items():
                totals[name] = totals.get(name, 0.0) + values * (chunk / config.draws)
    else:
        totals = {
            name: np.empty((num_slots, num_questions)) for name in (*METRICS, "forward_passes")
        }

    for n in exact_sizes:
        subsets = np.array(list(combinations(range(num_slots), n)), dtype=np.int16)
        for name in totals:
            totals[name][n - 1] = 0.0
        for start in range(0, len(subsets), _DRAW_CHUNK):
            chunk = subsets[start : start + _DRAW_CHUNK, None, :]
            for name, values in _vote_in_order(arrays, chunk).items():
                totals[name][n - 1] += values[-1] * (len(chunk) / len(subsets))
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

    Method "prefix" votes with the first n paths in path order. Method "random" takes the
    expectation over uniform random n-subsets. Each estimate is a fraction in [0, 1] with a
    bootstrap interval over questions. That interval ignores the Monte Carlo error of the
    expectation, which shrinks with `draws` and is far below the spread across questions at the
    default 1,000 draws.
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


def _key_counts(answered: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (question, answer key) with its count, first path and correctness.

    A key's correctness is that of its first path in path order. With an `nll` column, the
    lowest NLL among the key's paths is added as `min_nll`, and the first path with that NLL
    as `nll_path`.
    """
    pair = ["question_id", "answer_key"]
    keys = answered.drop_duplicates(pair)[[*pair, "path_id", "correct"]]
    keys = keys.rename(columns={"path_id": "first_path"})
    grouped = answered.groupby(pair, sort=False)
    keys = keys.merge(grouped.size().rename("count").reset_index(), on=pair)
    if "nll" in answered.columns:
        best = answered.sort_values([*pair, "nll", "path_id"], na_position="last")
        best = best.drop_duplicates(pair)[[*pair, "nll", "path_id"]]
        keys = keys.merge(best.rename(columns={"nll": "min_nll", "path_id": "nll_path"}), on=pair)
    keys["top"] = keys.groupby("question_id")["count"].transform("max")
    return keys


def _first_rows(frame: pd.DataFrame, order: list[str], ascending: list[bool]) -> pd.DataFrame:
    """Return the first row per question after sorting by `order`, indexed by question_id."""
    ordered = frame.sort_values(["question_id", *order], ascending=[True, *ascending])
    # drop_duplicates keeps whole rows, where groupby().first() would mix non-null cells.
    return ordered.drop_duplicates("question_id").set_index("question_id")


def vote_table(paths: pd.DataFrame) -> pd.DataFrame:
    """Vote every question with all of its paths and return one row per question.

    Columns: question_id, voted_key, correct, tie, answered_paths, and with an `nll` column
    also nll_key/nll_correct (NLL tie-break: a tie goes to the tied key whose best path has the
    lowest NLL, then to path order) and selected_correct (the single lowest-NLL path).
    """
    ordered = paths.sort_values(["question_id", "path_id"], kind="stable")
    answered = ordered[ordered["answer_key"].notna()]
    keys = _key_counts(answered)
    table = pd.DataFrame(index=pd.Index(ordered["question_id"].unique(), name="question_id"))

    winners = _first_rows(keys, ["count", "first_path"], [False, True])
    table["voted_key"] = winners["answer_key"]
    table["correct"] = winners["correct"].eq(True).reindex(table.index, fill_value=False)
    tied_keys = keys[keys["count"] == keys["top"]].groupby("question_id").size()
    table["tie"] = tied_keys.reindex(table.index, fill_value=0) >= 2
    answered_paths = answered.groupby("question_id").size()
    table["answered_paths"] = answered_paths.reindex(table.index, fill_value=0)

    if "nll" in paths.columns:
        # Keys without any NLL sort last among tied keys, and equal NLLs go to path order.
        order = ["count", "min_nll", "nll_path"]
        nll_winners = _first_rows(keys.fillna({"min_nll": np.inf}), order, [False, True, True])
        table["nll_key"] = nll_winners["answer_key"]
        table["nll_correct"] = (
            nll_winners["correct"].eq(True).reindex(table.index, fill_value=False)
        )
        scored = ordered[ordered["nll"].notna()]
        selected = _first_rows(scored, ["nll", "path_id"], [True, True])["correct"].eq(True)
        # A question whose paths all lack an NLL has no selected path and counts as wrong.
        table["selected_correct"] = selected.reindex(table.index, fill_value=False)
    return table.reset_index()
