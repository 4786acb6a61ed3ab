"""Per-path likelihood baselines: HEX's one-step score and LLaDA's Monte Carlo ELBO.

Shapes: B rows per forward pass, L canvas length, V vocabulary, n answer length, S samples.
Each row's canvas is its prompt followed by its answer window. Rows are left-padded to a common
length with an attention mask, so every answer window ends at the last position:

    row 0:  [pad pad | prompt ......... | answer ....]
    row 1:  [pad pad pad pad | prompt . | answer .....]
                                          ^ last n positions

- `one_step_nll`: one forward pass with every answer position masked; the NLL is minus the mean
  log-probability of the final tokens, averaged over the whole window. HEX scores paths this way.
- `elbo_nll`: LLaDA's conditional ELBO estimate. For each sample, mask l of the n answer positions
  (l from 1 to n), and score

      loss = (n / l) * sum over masked i of -log p(x_i | prompt, visible answer tokens),

  whose mean over l ~ U{1..n} and uniformly chosen masked sets bounds -log p(answer | prompt)
  from above. The counts l are stratified over the S samples, which lowers the variance.

Both return float64 arrays, one NLL in nats per row, and sum in float64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from hexlab.answers.voting import VoteResult, vote_keys

logger = logging.getLogger(__name__)


def _check_rows(lm, prompt_ids: Sequence[Sequence[int]], answer_ids: Sequence[Sequence[int]]):
    if len(prompt_ids) != len(answer_ids):
        raise ValueError(f"got {len(prompt_ids)} prompts for {len(answer_ids)} answers")
    for row, answer in enumerate(answer_ids):
        if len(answer) == 0:
            raise ValueError(f"answer {row} is empty; each row needs at least one answer token")
        if lm.mask_token_id in answer:
            raise ValueError(
                f"answer {row} still contains the mask token {lm.mask_token_id}; "
                f"score only fully decoded answers"
            )


def _left_pad(canvases: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad canvases into (B, L) int64 ids and a (B, L) bool attention mask."""
    length = max(len(canvas) for canvas in canvases)
    input_ids = torch.full((len(canvases), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(canvases), length), dtype=torch.bool)
    for row, canvas in enumerate(canvases):
        input_ids[row, length - len(canvas) :] = torch.tensor(canvas, dtype=torch.long)
        attention_mask[row, length - len(canvas) :] = True
    return input_ids.to(device), attention_mask.to(device)


def _pad_id(lm) -> int:
    pad_id = getattr(lm.tokenizer, "pad_token_id", None)
    return pad_id if pad_id is not None else lm.eos_token_id


@torch.no_grad()
def _answer_log_probs(lm, canvases: list[list[int]], answers: list[Sequence[int]]) -> torch.Tensor:
    """Run one forward pass; return (B, n_max) float64 log p(answer token), 0 past each answer.

    Column j of row b holds answer position j - (n_max - n_b), so short answers sit on the right.
    """
    input_ids, attention_mask = _left_pad(canvases, _pad_id(lm), lm.device)
    logits = lm.logits(input_ids, attention_mask)  # (B, L, V)
    assert logits.ndim == 3, f"logits must be (B, L, V), got {tuple(logits.shape)}"
    n_max = max(len(answer) for answer in answers)
    targets = torch.zeros((len(answers), n_max), dtype=torch.long)
    valid = torch.zeros((len(answers), n_max), dtype=torch.bool)
    for row, answer in enumerate(answers):
        targets[row, n_max - len(answer) :] = torch.tensor(list(answer), dtype=torch.long)
        valid[row, n_max - len(answer) :] = True
    targets, valid = targets.to(logits.device), valid.to(logits.device)

    # log-softmax through logsumexp, in float32, so no (B, n, V) float64 copy is made
    window = logits[:, -n_max:].float()  # (B, n_max, V)
    picked = window.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, n_max)
    log_probs = (picked - torch.logsumexp(window, dim=-1)).double()  # (B, n_max)
    return torch.where(valid, log_probs, torch.zeros_like(log_probs)).cpu()


def one_step_nll(
    lm,
    prompt_ids: Sequence[Sequence[int]],
    answer_ids: Sequence[Sequence[int]],
    batch_size: int = 8,
) -> np.ndarray:
    """Score paths the way HEX's NLL baseline does: one pass with the whole answer masked.

    Args:
        lm: a `hexlab.models.DiffusionLM`.
        prompt_ids: N prompts, token ids without padding.
        answer_ids: N answer windows (the final tokens, end-of-text padding included).
        batch_size: rows per forward pass.

    Returns:
        (N,) float64 NLL in nats: minus the mean log-probability over each answer window.
    """
    _check_rows(lm, prompt_ids, answer_ids)
    # Paths of one question share the fully masked canvas, so each distinct (prompt, window
    # length) takes one forward pass, whatever the number of paths scored against it.
    groups: dict[tuple[tuple[int, ...], int], list[int]] = {}
    for row, (prompt, answer) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        groups.setdefault((tuple(prompt), len(answer)), []).append(row)
    canvases = list(groups)
    nlls = np.empty(len(answer_ids), dtype=np.float64)
    for start in range(0, len(canvases), batch_size):
        batch = canvases[start : start + batch_size]
        window, log_norm = _masked_window_scores(lm, batch)  # (B, n_max, V), (B, n_max)
        n_max = window.shape[1]
        for index, (_, length) in enumerate(batch):
            rows = groups[batch[index]]
            targets = torch.tensor([list(answer_ids[r]) for r in rows], device=window.device)
            picked = window[index, n_max - length :].gather(-1, targets.T)  # (n, R)
            log_probs = (picked - log_norm[index, n_max - length :, None]).double()  # (n, R)
            nlls[rows] = (-log_probs.sum(dim=0) / length).cpu().numpy()
    return nlls


@torch.no_grad()
def _masked_window_scores(lm, canvases: list[tuple[tuple[int, ...], int]]):
    """Return float32 logits (B, n_max, V) and their logsumexp (B, n_max) over masked windows.

    Windows are right-aligned, so row b's answer position j sits at column j + n_max - n_b.
    Keeping the normaliser apart avoids a second (B, n_max, V) copy for the log-softmax.
    """
    rows = [list(prompt) + [lm.mask_token_id] * length for prompt, length in canvases]
    input_ids, attention_mask = _left_pad(rows, _pad_id(lm), lm.device)
    logits = lm.logits(input_ids, attention_mask)  # (B, L, V)
    n_max = max(length for _, length in canvases)
    window = logits[:, -n_max:].float()  # (B, n_max, V)
    return window, torch.logsumexp(window, dim=-1)


def elbo_masks(length: int, samples: int, seed: int = 0) -> np.ndarray:
    """Draw the ELBO's masked sets for an answer of `length` tokens: (S, n) bool.

    The mask counts run through 1..n evenly from a random offset (stratified sampling), and
    each sample's positions are a uniform random subset of that size. The generator is seeded
    by `seed` alone, so answers of equal length share their masks (common random numbers make
    path-to-path differences less noisy) and a row's estimate does not depend on its batch.
    """
    if length < 1 or samples < 1:
        raise ValueError(f"need length >= 1 and samples >= 1, got {length} and {samples}")
    rng = np.random.default_rng(seed)
    offset = int(rng.integers(length))
    counts = (offset + (np.arange(samples) * length) // samples) % length + 1  # (S,) in 1..n
    masks = np.zeros((samples, length), dtype=bool)
    for sample, count in enumerate(counts):
        masks[sample, rng.permutation(length)[:count]] = True
    return masks


def elbo_nll(
    lm,
    prompt_ids: Sequence[Sequence[int]],
    answer_ids: Sequence[Sequence[int]],
    samples: int = 128,
    seed: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """Estimate -log p(answer | prompt) per row with LLaDA's Monte Carlo ELBO.

    Args:
        lm: a `hexlab.models.DiffusionLM`.
        prompt_ids: N prompts, token ids without padding.
        answer_ids: N answers.
        samples: masked copies per row (S); LLaDA's default is 128.
        seed: seed of `elbo_masks`.
        batch_size: canvases per forward pass (rows times samples are flattened).

    Returns:
        (N,) float64 ELBO NLL estimate in nats (a sum over the answer, not a mean).
    """
    _check_rows(lm, prompt_ids, answer_ids)
    jobs = []  # (row, masked canvas, answer, mask) for every row and sample
    for row, (prompt, answer) in enumerate(zip(prompt_ids, answer_ids)):
        for mask in elbo_masks(len(answer), samples, seed):
            masked = [lm.mask_token_id if hide else token for token, hide in zip(answer, mask)]
            jobs.append((row, list(prompt) + masked, answer, mask))
    logger.info("ELBO: %d rows x %d samples in batches of %d", len(answer_ids), samples, batch_size)

    totals = np.zeros(len(answer_ids), dtype=np.float64)
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        log_probs = _answer_log_probs(lm, [j[1] for j in batch], [j[2] for j in batch]).numpy()

        # keep only masked positions, right-aligned like the log-probabilities
        for (row, _, answer, mask), row_log_probs in zip(batch, log_probs):
            masked_log_probs = row_log_probs[len(row_log_probs) - len(answer) :][mask]
            ratio = mask.sum() / len(answer)
            totals[row] += -masked_log_probs.sum() / ratio
    return totals / samples


def lowest_nll_index(nlls: Sequence[float]) -> int:
    """Return the index of the path with the lowest NLL; NaN counts as +inf."""
    scores = [math.inf if math.isnan(float(nll)) else float(nll) for nll in nlls]
    if not scores:
        raise ValueError("no paths to select from")
    return int(np.argmin(scores))


def select_by_nll(keys: Sequence[str | None], nlls: Sequence[float]) -> str | None:
    """Return the answer key of the lowest-NLL path (None when that path has no answer).

    This is HEX's NLL-selection baseline: one path decides and the other paths are ignored.
    """
    if len(keys) != len(nlls):
        raise ValueError(f"got {len(nlls)} NLLs for {len(keys)} paths")
    return keys[lowest_nll_index(nlls)]


def vote_with_nll_tiebreak(keys: Sequence[str | None], nlls: Sequence[float]) -> VoteResult:
    """Majority vote whose ties go to the answer of the lowest-NLL tied path."""
    return vote_keys(keys, rule="nll", nlls=nlls)
