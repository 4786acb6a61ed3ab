"""What a decoding run records per row, in compact numpy arrays, with NPZ storage and replay.

For R rows, answer window G, k alternatives and W watched positions:

    tokens       (R, G) int32    final token at each answer position
    reveal_step  (R, G) int16    forward pass (0-based, per row) that revealed it, -1 if never
    confidence   (R, G) float16  probability of the revealed token when it was revealed
    score        (R, G) float16  remasking score it was ranked by (-inf for a demoted stop token)
    topk_ids     (R, G, k) int32 the k most probable tokens at that moment
    topk_probs   (R, G, k) float16 their probabilities
    nfe          (R,) int16      forward passes the row took part in
    watched      (sum nfe, W, V) float16 the distribution at each watched position at every step,
                                 rows one after another; row r's block starts at watched_offsets[r]

Probabilities are those the decoder ranked and proposed with: the untempered softmax of the logits
with the mask token removed and the path's EOS rule applied (with "forbid" the end-of-text token
has probability 0). Rows are named by `row_ids`, their index in the list of rows given to the
decoder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from hexlab.decode.schedules import PathSpec

_ARRAYS = (
    "row_ids",
    "prompt_lengths",
    "tokens",
    "reveal_step",
    "confidence",
    "score",
    "topk_ids",
    "topk_probs",
    "nfe",
    "watched",
    "watched_offsets",
)


@dataclasses.dataclass
class DecodeStats:
    """Cost of a decoding run: batched forward calls, row steps and seconds."""

    forward_calls: int = 0  # batched forward passes
    row_steps: int = 0  # forward passes summed over rows (sum of nfe)
    forward_seconds: float = 0.0  # wall time inside the model forward
    wall_seconds: float = 0.0  # wall time of the whole decode

    def __add__(self, other: DecodeStats) -> DecodeStats:
        return DecodeStats(
            *(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other)))
        )


@dataclasses.dataclass
class Trajectories:
    """Decoding records of R rows (see the module docstring for the arrays)."""

    gen_length: int
    mask_token_id: int
    watch_positions: tuple[int, ...]
    specs: list[PathSpec]
    row_ids: np.ndarray
    prompt_lengths: np.ndarray
    tokens: np.ndarray
    reveal_step: np.ndarray
    confidence: np.ndarray
    score: np.ndarray
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    nfe: np.ndarray
    watched: np.ndarray | None = None
    watched_offsets: np.ndarray | None = None
    stats: DecodeStats = dataclasses.field(default_factory=DecodeStats)

    def __len__(self) -> int:
        return len(self.row_ids)

    def index_of(self, row: int) -> int:
        """Array index of the row whose row id is `row`."""
        hits = np.flatnonzero(self.row_ids == row)
        if len(hits) == 0:
            raise KeyError(f"row {row} is not in these trajectories (row ids {self._id_range()})")
        return int(hits[0])

    def watched_distributions(self, row: int) -> np.ndarray:
        """(nfe, W, V) float16 distributions at the watched positions, one per step of `row`."""
        if self.watched is None:
            raise ValueError("no positions were watched: set DecodeConfig.watch_positions")
        i = self.index_of(row)
        return self.watched[self.watched_offsets[i] : self.watched_offsets[i + 1]]

    def select(self, rows) -> Trajectories:
        """Copy out the rows with these row ids, in the given order."""
        index = np.array([self.index_of(row) for row in rows], dtype=np.int64)
        picked = {name: getattr(self, name)[index] for name in _ARRAYS[:9]}
        watched, offsets = None, None
        if self.watched is not None:
            parts = [
                self.watched[self.watched_offsets[i] : self.watched_offsets[i + 1]] for i in index
            ]
            watched = _concat_or_empty(parts, self.watched)
            offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        return dataclasses.replace(
            self,
            specs=[self.specs[i] for i in index],
            watched=watched,
            watched_offsets=offsets,
            **picked,
        )

    @staticmethod
    def concat(parts: list[Trajectories]) -> Trajectories:
        """Join the trajectories of several batches of the same run."""
        if not parts:
            raise ValueError("nothing to concatenate: give at least one Trajectories")
        first = parts[0]
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAYS[:9]}
        watched, offsets = None, None
        if first.watched is not None:
            watched = np.concatenate([p.watched for p in parts])
            sizes = np.concatenate([np.diff(p.watched_offsets) for p in parts])
            offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        stats = sum((p.stats for p in parts[1:]), first.stats)
        return dataclasses.replace(
            first,
            specs=[s for p in parts for s in p.specs],
            watched=watched,
            watched_offsets=offsets,
            stats=stats,
            **arrays,
        )

    def save(self, path: str | Path) -> None:
        """Write all arrays and the run metadata (specs, ids, stats as JSON) to one NPZ file."""
        meta = {
            "gen_length": self.gen_length,
            "mask_token_id": self.mask_token_id,
            "watch_positions": list(self.watch_positions),
            "specs": [dataclasses.asdict(spec) for spec in self.specs],
            "stats": dataclasses.asdict(self.stats),
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path, rows=None) -> Trajectories:
        """Read a file written by `save`; `rows` (row ids) keeps only those rows."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in _ARRAYS if name in data.files}
        trajectories = cls(
            gen_length=meta["gen_length"],
            mask_token_id=meta["mask_token_id"],
            watch_positions=tuple(meta["watch_positions"]),
            specs=[PathSpec(**spec) for spec in meta["specs"]],
            stats=DecodeStats(**meta["stats"]),
            **arrays,
        )
        return trajectories if rows is None else trajectories.select(rows)

    def _id_range(self) -> str:
        return f"{self.row_ids.min()}..{self.row_ids.max()}" if len(self) else "none"


def replay(trajectories: Trajectories, row: int) -> list[np.ndarray]:
    """Every answer canvas of one row, from all masks to the final tokens.

    Returns nfe + 1 int64 arrays of length G: element t is the answer window the model saw at
    forward pass t (mask id where unrevealed), and the last element is the final answer.
    """
    i = trajectories.index_of(row)
    tokens = trajectories.tokens[i].astype(np.int64)
    revealed_at = trajectories.reveal_step[i]
    unrevealed = np.where(revealed_at < 0, np.iinfo(np.int64).max, revealed_at)
    return [
        np.where(unrevealed < t, tokens, trajectories.mask_token_id)
        for t in range(int(trajectories.nfe[i]) + 1)
    ]


def _concat_or_empty(parts: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else like[:0]


class BatchRecorder:
    """Collects the records of one batch of B rows, step by step, into numpy arrays."""

    def __init__(
        self, num_rows: int, gen_length: int, top_k: int, num_watched: int, mask_token_id: int
    ):
        shape = (num_rows, gen_length)
        self.tokens = np.full(shape, mask_token_id, dtype=np.int32)
        self.reveal_step = np.full(shape, -1, dtype=np.int16)
        self.confidence = np.zeros(shape, dtype=np.float16)
        self.score = np.zeros(shape, dtype=np.float16)
        self.topk_ids = np.zeros((*shape, top_k), dtype=np.int32)
        self.topk_probs = np.zeros((*shape, top_k), dtype=np.float16)
        self.watched: list[list[np.ndarray]] | None = (
            [[] for _ in range(num_rows)] if num_watched else None
        )

    def record_reveals(self, reveals: dict[str, np.ndarray]) -> None:
        """Store one step's revealed positions.

        `reveals` maps "rows", "positions" and "steps" (S,) to the batch row, answer position
        and row step of each of the S reveals, and "tokens", "confidence", "score" (S,),
        "topk_ids" and "topk_probs" (S, k) to what is stored there.
        """
        rows, positions = reveals["rows"], reveals["positions"]
        self.tokens[rows, positions] = reveals["tokens"]
        self.reveal_step[rows, positions] = reveals["steps"]
        self.confidence[rows, positions] = reveals["confidence"]
        self.score[rows, positions] = reveals["score"]
        self.topk_ids[rows, positions] = reveals["topk_ids"]
        self.topk_probs[rows, positions] = reveals["topk_probs"]

    def record_watched(self, rows: np.ndarray, distributions: np.ndarray) -> None:
        """Append one step's (A, W, V) float16 watched distributions of batch rows `rows` (A,)."""
        for row, distribution in zip(rows.tolist(), distributions):
            self.watched[row].append(distribution)

    def finish(self, row_ids, specs, prompt_lengths, nfe, **fields) -> Trajectories:
        """Package the batch; `fields` are gen_length, mask_token_id, watch_positions, stats."""
        watched, offsets = None, None
        if self.watched is not None:
            per_row = [np.stack(steps) for steps in self.watched]
            watched = np.concatenate(per_row)
            offsets = np.concatenate([[0], np.cumsum([len(s) for s in per_row])]).astype(np.int64)
        return Trajectories(
            specs=list(specs),
            row_ids=np.asarray(row_ids, dtype=np.int64),
            prompt_lengths=np.asarray(prompt_lengths, dtype=np.int32),
            tokens=self.tokens,
            reveal_step=self.reveal_step,
            confidence=self.confidence,
            score=self.score,
            topk_ids=self.topk_ids,
            topk_probs=self.topk_probs,
            nfe=np.asarray(nfe, dtype=np.int16),
            watched=watched,
            watched_offsets=offsets,
            **fields,
        )
