"""Proposals, remasking scores and the choice of positions to reveal, shared by both decoders.

Proposal x0 at a masked position: the argmax of the logits at T = 0, else an exact sample from
softmax(logits / T) by the Gumbel-max trick,

    x0 = argmax_v (logits_v / T + g_v),   g_v = -log(-log u_v),   u_v ~ U[0, 1) in float64,

in float64 as in LLaDA's sampler: float32 uniforms cap g at about 16.6 (u <= 1 - 2^-24) and
quantize its upper tail, where the maximum over 126k tokens lies (about log 126k = 11.7). Remasking
scores rank the candidates of a step (higher is revealed first). They are computed from the
untempered softmax p = softmax(logits), whatever the temperature:

    low_confidence: p[x0]      top_k_margin: p(1) - p(2)      entropy: sum_v p_v log p_v
    random: u ~ U[0, 1) in float64 from the row's generator

Every random number comes from the row's own `torch.Generator`, so a row draws the same numbers
alone or in any batch.
"""

from __future__ import annotations

import torch

from hexlab.decode.schedules import REMASKING_RULES


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A generator on `device` seeded with `seed`: one per row."""
    return torch.Generator(device=device).manual_seed(seed)


def fill_uniform_(out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill `out` (float64) with U[0, 1) draws from `generator` in place, and return it.

    Both decoders draw every random number through this call, one call per row and purpose, so a
    row consumes its generator in the same way alone or in any batch.
    """
    assert out.dtype == torch.float64, f"uniform draws are float64, got {out.dtype}"
    return out.uniform_(generator=generator)


def gumbel_argmax_(
    uniforms: torch.Tensor, logits: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """Sample from softmax(logits / T) by Gumbel-max, overwriting `uniforms` as scratch space.

    Args:
        uniforms: (..., V) float64 draws from U[0, 1); a 0 gives noise -inf (never chosen).
        logits: (..., V) float logits.
        temperature: T > 0, a number or a float64 tensor that broadcasts against `uniforms`.

    Returns:
        (...) int64 sampled token ids.
    """
    assert uniforms.shape == logits.shape, "uniforms and logits must have the same shape"
    # g = -log(-log u); argmax(logits / T + g) = argmax(logits + T g) because T > 0
    uniforms.log_().neg_().log_().neg_()
    uniforms.mul_(temperature).add_(logits)
    return uniforms.argmax(dim=-1)


def sample_proposals(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Propose one token per row of `logits`.

    Args:
        logits: (N, V) float logits of N positions.
        temperature: 0 for argmax, T > 0 for a sample from softmax(logits / T).
        generator: source of the (N, V) float64 uniform draws; required when T > 0.

    Returns:
        (N,) int64 token ids. At T > 0 the call consumes N * V uniforms from `generator`.
    """
    assert logits.ndim == 2, f"logits must be (N, V), got {tuple(logits.shape)}"
    if temperature == 0:
        return logits.argmax(dim=-1)
    if generator is None:
        raise ValueError(f"temperature {temperature} needs a generator for the Gumbel noise")
    uniforms = torch.empty(logits.shape, dtype=torch.float64, device=logits.device)
    return gumbel_argmax_(fill_uniform_(uniforms, generator), logits, temperature)


def rule_scores(rule: str, probs: torch.Tensor, proposal: torch.Tensor) -> torch.Tensor:
    """Remasking scores of the deterministic rules, higher revealed first.

    Args:
        rule: "low_confidence", "top_k_margin" or "entropy"; "random" scores are uniform
            draws from the row's generator (`fill_uniform_`) instead.
        probs: (..., V) float untempered softmax at the candidate positions.
        proposal: (...) int64 proposed tokens.

    Returns:
        (...) float64 scores.
    """
    assert probs.ndim == proposal.ndim + 1, (
        f"probs (..., V) {tuple(probs.shape)} must have one more dim than proposal "
        f"{tuple(proposal.shape)}"
    )
    if rule == "low_confidence":
        scores = probs.gather(-1, proposal.unsqueeze(-1)).squeeze(-1)
    elif rule == "top_k_margin":
        top2 = probs.topk(2, dim=-1).values  # (..., 2)
        scores = top2[..., 0] - top2[..., 1]
    elif rule == "entropy":
        # entr(p) = -p log p with entr(0) = 0, so the score is the negative entropy.
        scores = -torch.special.entr(probs).sum(dim=-1)
    elif rule in REMASKING_RULES:
        raise ValueError(f"rule {rule!r} draws its scores from the row generator")
    else:
        raise ValueError(f"unknown remasking {rule!r}: use one of {', '.join(REMASKING_RULES)}")
    return scores.to(torch.float64)


def forbid_token(
    logits: torch.Tensor, token_id: int, rows: list[int] | None = None
) -> torch.Tensor:
    """Set the logit of `token_id` to -inf in place so it is never proposed; returns `logits`.

    `rows` limits the change to those indices of the first dimension (default all).
    """
    if rows is None:
        logits[..., token_id] = float("-inf")
    else:
        logits[rows, ..., token_id] = float("-inf")
    return logits


def demote_stop_proposals(
    scores: torch.Tensor,
    proposal: torch.Tensor,
    stop_ids: list[int],
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Give proposals of stop tokens (EOS, end of turn) a score of -inf in place.

    The score belongs to the proposal actually made (sampled at T > 0), so a sampled stop token is
    revealed last, and a non-stop sample at a position whose argmax is a stop token is not.

    Args:
        scores: (B, N) float remasking scores, changed in place and returned.
        proposal: (B, N) int64 proposed tokens.
        stop_ids: token ids to demote.
        rows: optional (B,) bool, True on the rows the rule applies to (default all).
    """
    assert scores.ndim == 2, f"scores must be (B, N), got {tuple(scores.shape)}"
    assert proposal.shape == scores.shape, "proposal must have the shape of scores"
    stop = torch.isin(proposal, torch.tensor(stop_ids, device=proposal.device))  # (B, N)
    if rows is not None:
        stop &= rows[:, None]
    scores[stop] = float("-inf")
    return scores


def select_reveals(scores: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Pick, per row, the `counts` valid candidates with the highest scores.

    Ties (equal scores, -inf included) go to the candidate listed first, which is the leftmost
    position when candidates are listed in position order. Invalid slots (padding of a ragged
    batch) are never picked.

    Args:
        scores: (B, N) float scores.
        valid: (B, N) bool, True on real candidates.
        counts: (B,) int64 number to reveal per row, at most the row's valid count.

    Returns:
        (B, N) bool, True on the candidates to reveal.
    """
    assert scores.ndim == 2, f"scores must be (B, N), got {tuple(scores.shape)}"
    assert valid.shape == scores.shape, "valid must have the shape of scores"
    assert counts.shape == scores.shape[:1], f"counts must be (B,), got {tuple(counts.shape)}"
    # order by score, then move valid candidates ahead of padding without breaking that order
    order = torch.argsort(scores, dim=1, descending=True, stable=True)  # (B, N)
    invalid_in_order = (~valid.gather(1, order)).to(torch.int8)
    order = order.gather(1, torch.argsort(invalid_in_order, dim=1, stable=True))
    rank_is_picked = torch.arange(scores.shape[1], device=scores.device) < counts[:, None]
    reveal = torch.zeros_like(valid)
    reveal.scatter_(1, order, rank_is_picked)
    return reveal & valid
