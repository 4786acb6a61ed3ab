"""Majority vote over vote keys, with explicit tie rules.

Paths whose answer is None do not vote. The key with the most votes wins; when two or more keys
share the top count the question is a tie and `rule` picks among the tied keys:

- "first": the tied key that appears first in path order. This is HEX's rule, with paths ordered
  by ascending block size, so the smallest block size wins ties.
- "nll": the tied key held by the path with the lowest negative log-likelihood (`nlls` required).
- "random": a tied key drawn with `random.Random(seed)`, so a seed gives the same pick every run.

A question where no path has an answer gets key None and tie False; graders count it wrong.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence

TIE_RULES = ("first", "nll", "random")


@dataclasses.dataclass(frozen=True)
class VoteResult:
    """Outcome of one question's vote.

    Attributes:
        key: winning vote key, or None when no path has an answer.
        tie: True when the top count was shared by two or more distinct keys.
        counts: votes per key, in order of first appearance.
        n_voting: number of paths with an answer.
        first_index: index of the first path that holds the winning key, or None.
    """

    key: str | None
    tie: bool
    counts: dict[str, int]
    n_voting: int
    first_index: int | None = None


def _check_rule(rule: str, nlls: Sequence[float] | None, n_paths: int) -> None:
    if rule not in TIE_RULES:
        raise ValueError(f"unknown tie rule {rule!r}: use one of {', '.join(TIE_RULES)}")
    if rule == "nll" and nlls is None:
        raise ValueError("tie rule 'nll' needs one NLL per path: pass nlls")
    if nlls is not None and len(nlls) != n_paths:
        raise ValueError(f"got {len(nlls)} NLLs for {n_paths} paths; pass one NLL per path")


def _lowest_nll_key(keys: Sequence[str | None], tied: list[str], nlls: Sequence[float]) -> str:
    """Return the tied key whose best path has the lowest NLL; NaN counts as +inf."""
    best_key, best_nll = tied[0], math.inf
    for key, nll in zip(keys, nlls, strict=True):
        value = math.inf if nll is None or math.isnan(nll) else float(nll)
        if key in tied and value < best_nll:
            best_key, best_nll = key, value
    return best_key


def vote_keys(
    keys: Sequence[str | None],
    rule: str = "first",
    nlls: Sequence[float] | None = None,
    seed: int = 0,
) -> VoteResult:
    """Vote over per-path keys (None for a path without an answer).

    Args:
        keys: one vote key per path, in path order.
        rule: tie rule, one of `TIE_RULES`.
        nlls: one negative log-likelihood per path; required by the "nll" rule.
        seed: seed of the "random" rule.
    """
    _check_rule(rule, nlls, len(keys))
    counts: dict[str, int] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return VoteResult(key=None, tie=False, counts={}, n_voting=0)

    # dicts keep insertion order, so `tied` lists keys by first appearance in path order
    top = max(counts.values())
    tied = [key for key, count in counts.items() if count == top]
    if len(tied) == 1 or rule == "first":
        winner = tied[0]
    elif rule == "nll":
        winner = _lowest_nll_key(keys, tied, nlls)
    else:
        winner = random.Random(seed).choice(tied)
    return VoteResult(
        key=winner,
        tie=len(tied) > 1,
        counts=counts,
        n_voting=sum(counts.values()),
        first_index=list(keys).index(winner),
    )


def tie_rate(ties: Iterable[bool]) -> float:
    """Return the share of questions whose vote was a tie, or NaN for no questions."""
    flags = [bool(tie) for tie in ties]
    return sum(flags) / len(flags) if flags else math.nan
