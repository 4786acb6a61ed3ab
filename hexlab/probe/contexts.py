"""Probe inputs: checking a probe request, enumerating visible sets and building canvases.

A probe reads p(x_t | prompt, x[U]) at target answer positions t for subsets U of candidate answer
positions. Each subset is one context, and the model's conditional for it is one "expert". One
canvas row, with P prompt tokens and an answer window of G positions, looks like this:

    [ prompt (P) | answer window (G): reference token where the position is in U, mask elsewhere ]

Targets are never candidates, so they are always masked, and so is every answer position outside
the candidates. Contexts are numbered by their row in the enumeration. When every subset is
probed, context i shows candidate j when bit j of i is set, so with candidates (0, 1, 2) context 5
shows candidates 0 and 2.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Up to 16 candidates every subset is probed (65,536 contexts); above that a sample count is needed.
EXHAUSTIVE_LIMIT = 16
MASKED_LABEL = "_"


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    """A probe request: prompt, reference answer and the answer positions involved.

    Positions count from 0 at the first answer token. A text prompt is a user message rendered
    through the chat template, followed by `prefill`. A text answer is tokenized without special
    tokens, so write an end-of-turn token into it when the model expects one.
    """

    prompt: str | Sequence[int]
    answer: str | Sequence[int]
    targets: Sequence[int]
    visible: Sequence[int]  # candidate positions: every subset of them is shown once
    prefill: str = ""
    # Answer window length; the answer is padded with end-of-text tokens up to it, and None makes
    # the window exactly as long as the answer.
    gen_length: int | None = None


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """How much to probe and what to keep per context."""

    top_k: int = 10  # most probable tokens kept per context and target, plus the reference
    full: bool = False  # also keep the whole distribution at each target
    sample: int | None = None  # number of seeded random subsets in place of all 2^k
    seed: int = 0
    batch_size: int = 32  # contexts per forward pass; memory grows with it

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"sample must be at least 1 subset, got {self.sample}")


@dataclasses.dataclass(frozen=True)
class ResolvedProbe:
    """A checked probe request as token ids and sorted positions."""

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]  # the reference answer window, G ids
    targets: tuple[int, ...]
    candidates: tuple[int, ...]

    @property
    def prompt_length(self) -> int:
        return len(self.prompt_ids)


def resolve_probe(lm, spec: ProbeSpec) -> ResolvedProbe:
    """Tokenize the prompt and answer of `spec` and check every position against them.

    Raises ValueError, naming the value and the fix, for empty or repeated positions, positions
    outside the answer window, targets among the candidates, an answer longer than `gen_length`
    and a canvas longer than the model accepts.
    """
    prompt_ids = _prompt_ids(lm, spec)
    answer_ids = _answer_ids(lm, spec)
    targets = _check_positions("target", spec.targets, len(answer_ids), spec)
    candidates = _check_positions("visible", spec.visible, len(answer_ids), spec, allow_empty=True)
    overlap = sorted(set(targets) & set(candidates))
    if overlap:
        raise ValueError(
            f"positions {overlap} are both targets and visible candidates; a target is always "
            f"masked, so remove it from the visible positions"
        )
    canvas_length = len(prompt_ids) + len(answer_ids)
    if lm.max_length is not None and canvas_length > lm.max_length:
        raise ValueError(
            f"prompt ({len(prompt_ids)} tokens) plus answer window ({len(answer_ids)}) is "
            f"{canvas_length} tokens, more than the model's maximum of {lm.max_length}; "
            f"shorten the prompt or the answer window"
        )
    return ResolvedProbe(tuple(prompt_ids), tuple(answer_ids), targets, candidates)


def check_enumeration(num_candidates: int, config: ProbeConfig) -> None:
    """Raise ValueError when all 2^k subsets are requested above `EXHAUSTIVE_LIMIT` candidates."""
    if num_candidates > EXHAUSTIVE_LIMIT and config.sample is None:
        raise ValueError(
            f"{num_candidates} visible candidates give 2^{num_candidates} contexts, above the "
            f"exhaustive limit of {EXHAUSTIVE_LIMIT} candidates; pass a sample count (sample=N, "
            f"--sample N) or use at most {EXHAUSTIVE_LIMIT} candidates"
        )


def _prompt_ids(lm, spec: ProbeSpec) -> list[int]:
    if isinstance(spec.prompt, str):
        return lm.encode_prompt(spec.prompt, prefill=spec.prefill)
    if spec.prefill:
        raise ValueError(
            f"prefill {spec.prefill!r} applies only to a text prompt, but the prompt is given as "
            f"token ids; append the prefill's ids to the prompt ids instead"
        )
    return [int(i) for i in spec.prompt]


def _answer_ids(lm, spec: ProbeSpec) -> list[int]:
    """Tokenize the answer (text or ids) and pad it with end-of-text to the answer window."""
    if isinstance(spec.answer, str):
        ids = list(lm.tokenizer(spec.answer, add_special_tokens=False)["input_ids"])
    else:
        ids = [int(i) for i in spec.answer]
    if not ids:
        raise ValueError(f"answer {spec.answer!r} has no tokens; give a non-empty answer")
    if lm.mask_token_id in ids:
        raise ValueError(
            f"answer {spec.answer!r} contains the mask token (id {lm.mask_token_id}) at position "
            f"{ids.index(lm.mask_token_id)}; a reference answer must be fully known"
        )
    gen_length = len(ids) if spec.gen_length is None else spec.gen_length
    if len(ids) > gen_length:
        raise ValueError(
            f"answer {spec.answer!r} tokenizes to {len(ids)} tokens, more than the answer window "
            f"of gen_length={gen_length}; raise gen_length or shorten the answer"
        )
    return ids + [lm.eos_token_id] * (gen_length - len(ids))


def _check_positions(
    kind: str, positions: Sequence[int], window: int, spec: ProbeSpec, allow_empty: bool = False
) -> tuple[int, ...]:
    positions = [int(p) for p in positions]
    if not positions and not allow_empty:
        raise ValueError(f"no {kind} positions given; pass at least one answer position")
    if len(set(positions)) != len(positions):
        raise ValueError(f"{kind} positions {positions} repeat a position; list each once")
    outside = [p for p in positions if not 0 <= p < window]
    if outside:
        source = "the answer" if spec.gen_length is None else f"gen_length={spec.gen_length}"
        raise ValueError(
            f"{kind} positions {outside} are outside the answer window of {window} tokens "
            f"(positions 0..{window - 1}, set by {source}); use positions inside it, or pass a "
            f"longer answer or gen_length"
        )
    return tuple(sorted(positions))


def enumerate_subsets(num_candidates: int, sample: int | None = None, seed: int = 0) -> np.ndarray:
    """Return the visible sets as a (N, k) bool array, row i marking the candidates shown.

    Without `sample` all N = 2^k subsets are listed, row i being the binary digits of i (bit j is
    candidate j). With `sample`, N = min(sample, 2^k) distinct subsets are drawn uniformly with a
    seeded generator; rows are then sorted by the same integer, so the order does not depend on
    the draw order.
    """
    total = 2**num_candidates
    if sample is None or sample >= total:
        bits = (np.arange(total)[:, None] >> np.arange(num_candidates)[None, :]) & 1  # (N, k)
        return bits.astype(bool)
    rng = np.random.default_rng(seed)
    drawn: dict[bytes, np.ndarray] = {}
    while len(drawn) < sample:
        # each row is a uniform draw over all 2^k subsets; repeats are dropped and redrawn
        for row in rng.integers(0, 2, size=(sample - len(drawn), num_candidates), dtype=bool):
            drawn.setdefault(np.packbits(row).tobytes(), row)
    subsets = np.stack(list(drawn.values()))  # (N, k)
    order = np.lexsort(subsets.T)  # the last column (highest bit) is the primary key
    return subsets[order]


def build_canvases(probe: ResolvedProbe, subsets: np.ndarray, mask_token_id: int) -> torch.Tensor:
    """Build one canvas per visible set.

    Args:
        probe: the resolved probe (prompt ids, reference answer window, candidates).
        subsets: (B, k) bool, True where the candidate is shown.
        mask_token_id: id written at every hidden answer position.

    Returns:
        (B, P + G) int64 canvases: prompt, then the answer window with the reference token at
        shown candidates and the mask everywhere else.
    """
    assert subsets.ndim == 2, f"subsets must be (B, k), got {subsets.shape}"
    batch = subsets.shape[0]
    answer = torch.tensor(probe.answer_ids, dtype=torch.int64)  # (G,)
    window = torch.full((batch, len(answer)), mask_token_id, dtype=torch.int64)  # (B, G)
    candidates = torch.tensor(probe.candidates, dtype=torch.int64)  # (k,)
    shown = torch.from_numpy(np.ascontiguousarray(subsets, dtype=bool))  # (B, k)
    window[:, candidates] = torch.where(shown, answer[candidates], mask_token_id)
    prompt = torch.tensor(probe.prompt_ids, dtype=torch.int64).expand(batch, -1)  # (B, P)
    return torch.cat([prompt, window], dim=1)


def describe_contexts(probe: ResolvedProbe, subsets: np.ndarray, token_text) -> list[dict]:
    """Describe each context: its row, the shown positions, |U| and the candidates as text.

    `token_text` maps a token id to its text. Hidden candidates read as `MASKED_LABEL`, so with
    candidates "The", " inventor", " was" and U = {0, 2} the text is "The _ was".
    """
    rows = []
    for context, row in enumerate(subsets):
        positions = [probe.candidates[j] for j in np.flatnonzero(row)]
        pieces = [
            token_text(probe.answer_ids[p]).strip() or repr(token_text(probe.answer_ids[p]))
            if row[j]
            else MASKED_LABEL
            for j, p in enumerate(probe.candidates)
        ]
        rows.append(
            {
                "context": context,
                "visible": format_visible(positions),
                "size": len(positions),
                "shown": " ".join(pieces),
            }
        )
    return rows


def format_visible(positions: Sequence[int]) -> str:
    """Label a visible set as "{0,2}"; the empty set is "{}"."""
    return "{" + ",".join(str(p) for p in positions) + "}"


def parse_visible(label: str) -> tuple[int, ...]:
    """Invert `format_visible`."""
    inner = label.strip().removeprefix("{").removesuffix("}")
    return tuple(int(p) for p in inner.split(",") if p.strip())
