"""Logits at selected canvas positions, with the LM head run only there when the model allows.

A decoding step needs scores only at the active block's masked positions and any watched ones.
The full (B, L, V) output of the LM head wastes memory that grows with the canvas: at LLaDA's
126,464-token vocabulary, one 600-token row is 300 MB of float32 logits. When the model's
output embedding (`get_output_embeddings()`) is a `torch.nn.Linear`, a forward pre-hook gathers
its input hidden states at the requested positions, so the head returns (B, N, V). Other models
(no such module, or a head that bypasses it) get the full logits, gathered afterwards.
"""

from __future__ import annotations

import contextlib
import inspect

import torch


def logits_at(
    lm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, positions: torch.Tensor
) -> torch.Tensor:
    """Scores of the tokens at `positions` of each canvas row.

    Args:
        lm: a `DiffusionLM` (or any object with the same `logits` call).
        input_ids: (B, L) int64 canvas, left-padded.
        attention_mask: (B, L) bool, True on real tokens, or None for unpadded rows.
        positions: (B, N) int64 canvas columns to score.

    Returns:
        (B, N, V) logits in the model's dtype.
    """
    assert input_ids.ndim == 2, f"input_ids must be (B, L), got {tuple(input_ids.shape)}"
    assert positions.ndim == 2, f"positions must be (B, N), got {tuple(positions.shape)}"
    assert positions.shape[0] == input_ids.shape[0], "positions and input_ids differ in B"
    if _accepts_positions(lm):
        return lm.logits(input_ids, attention_mask, positions=positions)
    head = _output_linear(lm)
    if head is None:
        return _gather_positions(lm.logits(input_ids, attention_mask), positions)
    with _head_only_at(head, positions) as fired:
        logits = lm.logits(input_ids, attention_mask)
    if not fired[0]:
        # the model computed its logits without calling the output embedding module
        logits = _gather_positions(logits, positions)
    return logits


def _gather_positions(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, L, V) logits -> (B, N, V) at `positions` (B, N)."""
    index = positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index)


def _accepts_positions(lm) -> bool:
    """Return whether `lm.logits` takes a `positions` argument and restricts the head itself."""
    try:
        return "positions" in inspect.signature(lm.logits).parameters
    except (TypeError, ValueError):
        return False


def _output_linear(lm) -> torch.nn.Linear | None:
    """Return the model's final vocabulary projection, or None where the hook cannot be used.

    Models whose logits at position i score another position (Dream shifts them by one) would
    mix up gathered rows, so they get the full logits.
    """
    profile = getattr(lm, "profile", None)
    if getattr(profile, "shift_logits", False):
        return None
    model = getattr(lm, "model", None)
    if model is None or not hasattr(model, "get_output_embeddings"):
        return None
    head = model.get_output_embeddings()
    return head if isinstance(head, torch.nn.Linear) else None


@contextlib.contextmanager
def _head_only_at(head: torch.nn.Linear, positions: torch.Tensor):
    """Make `head` read its (B, L, D) input only at `positions` (B, N) while the block runs.

    Yields a one-element list that becomes [True] once the hook has run.
    """
    fired = [False]

    def gather_hidden(module, args):
        hidden = args[0]  # (B, L, D)
        index = positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])  # (B, N, D)
        fired[0] = True
        return (hidden.gather(1, index), *args[1:])

    handle = head.register_forward_pre_hook(gather_hidden)
    try:
        yield fired
    finally:
        handle.remove()
