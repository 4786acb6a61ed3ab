"""The HEX majority vote over many path subsets at once, on dense numpy arrays.

The scaling curves vote every question with thousands of path subsets, which a Python loop over
`hexlab.answers.vote_keys` cannot do in seconds. Here a paths table becomes (question, slot)
arrays, and `RunningVote` grows many subsets per question by one path at a time with vectorised
updates. The vote rule is the one `vote_keys` implements with rule "first". The majority over
answer keys among paths with an answer wins, and a tie goes to the tied key that appears first
in path order. A question without any answer has no winner and counts as wrong. Tests compare
both implementations on random cases.

Slots are compacted per question: slot s of a question is its (s+1)-th available path in
ascending `path_id` order. A question that lacks some path ids (possible in imported runs) thus
has its paths in slots 0..k-1, and its later slots are empty. An empty slot adds nothing to a
vote: no answer, not correct, no forward passes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from hexlab.paths_table import keep_first_paths

logger = logging.getLogger(__name__)

METRICS = ("accuracy", "tie_rate", "coverage")


@dataclass(frozen=True)
class PathArrays:
    """Paths table as dense (question, slot) arrays, slots compacted per question.

    `keys` contains per-question answer codes numbered by first appearance in path order, with -1
    for no answer or an empty slot. `key_correct` has one spare last column of False, which the
    "no winner" code -1 indexes. `num_paths` counts each question's available paths.
    """

    question_ids: np.ndarray
    keys: np.ndarray
    correct: np.ndarray
    nfe: np.ndarray
    key_correct: np.ndarray
    num_paths: np.ndarray

    @property
    def num_slots(self) -> int:
        return self.keys.shape[1]

    @property
    def num_keys(self) -> int:
        return self.key_correct.shape[1] - 1

    @property
    def available(self) -> np.ndarray:
        """(questions, slots) bool, True where the slot contains one of the question's paths."""
        return np.arange(self.num_slots)[None, :] < self.num_paths[:, None]

    def take(self, rows: np.ndarray) -> PathArrays:
        """Return the arrays of the questions at the row indices `rows`."""
        return replace(
            self,
            **{
                name: getattr(self, name)[rows]
                for name in ("question_ids", "keys", "correct", "nfe", "key_correct", "num_paths")
            },
        )


def _key_codes(question_codes: np.ndarray, answer_keys: np.ndarray) -> tuple:
    """Number answer keys per question by first appearance and return (global, local) codes.

    Rows must be sorted by question, so each question's keys get consecutive global codes, and
    subtracting the question's lowest code numbers them from 0.
    """
    global_codes, _ = pd.factorize(pd.MultiIndex.from_arrays([question_codes, answer_keys]))
    lowest = pd.Series(global_codes).groupby(question_codes).transform("min").to_numpy()
    return global_codes, global_codes - lowest


def build_arrays(paths: pd.DataFrame, max_paths: int | None = None) -> PathArrays:
    """Convert a paths table into `PathArrays`, keeping the `max_paths` lowest path ids if given."""
    if paths.empty:
        raise ValueError("the paths table has no rows")
    if paths.duplicated(["question_id", "path_id"]).any():
        raise ValueError("the paths table repeats a (question_id, path_id) pair")
    table = keep_first_paths(paths, max_paths)
    question_codes, question_ids = pd.factorize(table["question_id"], sort=True)
    table = table.assign(_q=question_codes).sort_values(["_q", "path_id"], kind="stable")
    q = table["_q"].to_numpy()
    # A question's paths fill its first slots in path order, whichever path ids it lacks.
    s = table.groupby("_q", sort=False).cumcount().to_numpy()
    num_paths = np.bincount(q, minlength=len(question_ids))
    shape = (len(question_ids), int(num_paths.max()))

    answered = table["answer_key"].notna().to_numpy()
    global_codes, local_codes = _key_codes(q[answered], table["answer_key"].to_numpy()[answered])
    keys = np.full(shape, -1, dtype=np.int16)
    keys[q[answered], s[answered]] = local_codes

    correct = np.zeros(shape, dtype=bool)
    # A missing correctness value counts as wrong.
    correct[q, s] = table["correct"].eq(True).to_numpy()
    nfe = np.zeros(shape)
    nfe[q, s] = table["nfe"].to_numpy(dtype=float)

    num_keys = int(keys.max()) + 1
    key_correct = np.zeros((shape[0], num_keys + 1), dtype=bool)
    _, first_rows = np.unique(global_codes, return_index=True)
    answered_q, answered_s = q[answered], s[answered]
    rows_q, rows_s = answered_q[first_rows], answered_s[first_rows]
    key_correct[rows_q, keys[rows_q, rows_s]] = correct[rows_q, rows_s]
    return PathArrays(np.asarray(question_ids), keys, correct, nfe, key_correct, num_paths)


class RunningVote:
    """Votes of many subsets per question, each grown by one path per `add` call.

    Arrays have shape (streams, questions). Vote counts and each key's first slot live in flat
    buffers indexed by (stream, question, key), where the last key column takes paths without an
    answer and so never wins. `winner` is the local key code of each vote (-1 for none), and
    `keys_at_top` the number of distinct keys that share the top count.
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


def vote_in_order(arrays: PathArrays, slot_order: np.ndarray) -> dict[str, np.ndarray]:
    """Add paths one slot at a time and return per-question metrics after each step.

    `slot_order` has shape (streams, questions or 1, steps): stream i adds slot
    `slot_order[i, q, t]` at step t, and every stream is a subset grown in its own order.
    Returns arrays of shape (steps, questions) averaged over streams.
    """
    streams, _, steps = slot_order.shape
    num_questions = arrays.keys.shape[0]
    order = np.broadcast_to(slot_order, (streams, num_questions, steps))
    vote = RunningVote(arrays, streams)
    result = {name: np.empty((steps, num_questions)) for name in (*METRICS, "forward_passes")}
    for step in range(steps):
        vote.add(order[:, :, step])
        for name, values in vote.metrics().items():
            result[name][step] = values
    return result
