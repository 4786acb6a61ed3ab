"""A plain one-row decoder with the semantics of LLaDA's published `generate()`.

Kept as the ground truth for the batched engine's tests and as the baseline of the decoding
benchmarks. One row, no batching and no attention mask; every step scores the whole canvas:

    for each non-empty step of the path (block [start, end), reveal count k):
        logits = model(canvas)                                       (1, L, V), full canvas
        x0     = argmax(logits), or at T > 0 Gumbel-max with float64 noise over all L x V
        p      = softmax(logits)                                     untempered, full canvas
        score the masked positions of the block by the path's rule, reveal the k best

Choices where LLaDA's code leaves room, shared with the engine so both give the same tokens:
- ties in the score go to the leftmost position;
- the random rule draws one U[0, 1) float64 score per masked position of the block from the
  row's generator (LLaDA draws one per canvas position from the global generator), so at T = 0
  random remasking matches the engine exactly;
- steps that reveal nothing are skipped, so the reference takes `spec.nfe` forward passes;
- the mask token is removed from every distribution, so it is never proposed (LLaDA's sampler
  keeps it, and an undertrained model can sample it at T > 0).
At T > 0 the two decoders draw different amounts of noise (full canvas here, block candidates in
the engine), so their samples differ; each is an exact sample from softmax(logits / T).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hexlab.decode.sampling import (
    demote_stop_proposals,
    fill_uniform_,
    forbid_token,
    make_generator,
    rule_scores,
    sample_proposals,
    select_reveals,
)
from hexlab.decode.schedules import PathSpec


@dataclasses.dataclass(frozen=True)
class ReferenceResult:
    """Output of `reference_decode` for one row."""

    tokens: np.ndarray  # (G,) int64 answer tokens
    reveal_step: np.ndarray  # (G,) int64 forward pass (0-based) that revealed each position
    nfe: int  # forward passes taken


@torch.inference_mode()
def reference_decode(lm, prompt_ids: list[int], spec: PathSpec) -> ReferenceResult:
    """Decode one prompt along one path, one full-canvas forward pass per step."""
    device = lm.device
    gen_length = spec.gen_length
    offset = len(prompt_ids)  # canvas column of answer position 0
    canvas = torch.tensor(
        [list(prompt_ids) + [lm.mask_token_id] * gen_length], dtype=torch.long, device=device
    )  # (1, L)
    generator = make_generator(spec.seed, device)
    reveal_step = np.full(gen_length, -1, dtype=np.int64)

    for t, step in enumerate(spec.plan()):
        # score the whole canvas
        logits = lm.logits(canvas).float()  # (1, L, V)
        forbid_token(logits, lm.mask_token_id)  # never propose the mask token, as the engine
        if spec.eos == "forbid":
            forbid_token(logits, lm.eos_token_id)

        # propose tokens at every canvas position
        proposal = sample_proposals(logits[0], spec.temperature, generator)  # (L,)
        probs = logits[0].softmax(dim=-1)  # (L, V)

        # candidates: masked positions of the current block, left to right
        columns = torch.arange(offset + step.start, offset + step.end, device=device)
        candidates = columns[canvas[0, columns] == lm.mask_token_id]  # (n,)
        if spec.remasking == "random":
            scores = torch.empty(len(candidates), dtype=torch.float64, device=device)
            fill_uniform_(scores, generator)
        else:
            scores = rule_scores(spec.remasking, probs[candidates], proposal[candidates])
        scores = scores[None]  # (1, n)
        if spec.eos == "no_confidence":
            demote_stop_proposals(scores, proposal[candidates][None], lm.stop_token_ids)

        # reveal the `count` best candidates
        counts = torch.tensor([step.count], device=device)
        reveal = select_reveals(scores, torch.ones_like(scores, dtype=torch.bool), counts)[0]
        chosen = candidates[reveal]
        canvas[0, chosen] = proposal[chosen]
        reveal_step[(chosen - offset).cpu().numpy()] = t

    tokens = canvas[0, offset:].cpu().numpy()
    return ReferenceResult(tokens=tokens, reveal_step=reveal_step, nfe=len(spec.plan()))
