"""Reading every expert's distribution at the target positions, a batch of contexts at a time.

Dimension letters: N contexts, B contexts in a batch, k candidates, T targets, V vocabulary,
P prompt length, G answer window, L = P + G canvas length.

Memory stays bounded by the batch size. Per context only a few numbers per target are kept: the
top-k tokens, the reference token's probability and rank, the argmax and the entropy. Distributions
summed per visible-set size, (k + 1, T, V) in float64, make the uniform and size-gated mixtures
exact without storing any single context's distribution. The whole (N, T, V) tensor is stored only
when `ProbeConfig.full` is set.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hexlab.decode.forward import logits_at
from hexlab.probe.contexts import (
    ProbeConfig,
    ProbeSpec,
    ResolvedProbe,
    build_canvases,
    check_enumeration,
    describe_contexts,
    enumerate_subsets,
    resolve_probe,
)

logger = logging.getLogger(__name__)

EXPERT_STATS = (
    "reference_probability",
    "reference_rank",
    "argmax_id",
    "argmax_probability",
    "entropy",
)


@dataclasses.dataclass
class ProbeResult:
    """The experts of one probe.

    Attributes:
        probe: the resolved request (prompt ids, reference answer window, targets, candidates).
        config: the settings it ran with.
        contexts: one row per context: context, visible (a label such as "{0,2}"), size (|U|),
            shown (the candidates as text, "_" where hidden).
        experts: one row per context and target: the reference token's probability and rank
            (1 = most probable), the argmax token and its probability, the entropy in nats.
        tokens: tidy rows (context, visible, size, target, token_id, token, probability, rank,
            is_reference, shown): the top-k tokens of each context and target, plus the reference
            token when the top k leave it out.
        size_sums: (k + 1, T, V) float64, the distributions summed over the contexts of each size.
        size_counts: (k + 1,) int64, contexts of each size.
        distributions: (N, T, V) float32 when `config.full`, else None.
        token_text: maps a token id to its text.
    """

    probe: ResolvedProbe
    config: ProbeConfig
    contexts: pd.DataFrame
    experts: pd.DataFrame
    tokens: pd.DataFrame
    size_sums: torch.Tensor
    size_counts: torch.Tensor
    distributions: torch.Tensor | None
    token_text: Callable[[int], str]

    @property
    def reference_ids(self) -> dict[int, int]:
        """Reference token id at each target position."""
        return {t: self.probe.answer_ids[t] for t in self.probe.targets}

    def distribution_frame(self) -> pd.DataFrame:
        """Return every token's probability as tidy rows; needs `ProbeConfig(full=True)`.

        Columns are those of `tokens` but rank, so the figures take either frame.
        """
        if self.distributions is None:
            raise ValueError("the whole distributions were not kept; probe with full=True (--full)")
        num_contexts, num_targets, vocab = self.distributions.shape
        frame = pd.DataFrame(
            {
                "context": np.repeat(np.arange(num_contexts), num_targets * vocab),
                "target": np.tile(np.repeat(self.probe.targets, vocab), num_contexts),
                "token_id": np.tile(np.arange(vocab), num_contexts * num_targets),
                "probability": self.distributions.reshape(-1).numpy(),
            }
        )
        frame["token"] = frame["token_id"].map(self.token_text)
        reference = frame["target"].map(self.reference_ids)
        frame["is_reference"] = frame["token_id"] == reference
        frame = frame.merge(self.contexts, on="context")
        columns = ["context", "visible", "size", "target", "token_id", "token", "probability"]
        return frame[columns + ["is_reference", "shown"]]


def probe_experts(lm, spec: ProbeSpec, config: ProbeConfig | None = None) -> ProbeResult:
    """Read the distribution at each target for every visible set of the candidates.

    `lm` is a `hexlab.models.DiffusionLM`. All rows of a batch share the prompt, so no padding is
    needed and the attention mask passed is all ones. The LM head runs only at the targets where
    the model allows it (see `hexlab.decode.forward.logits_at`), so a batch's logits take
    B x T x V memory in place of B x L x V.
    """
    config = config or ProbeConfig()
    probe = resolve_probe(lm, spec)
    check_enumeration(len(probe.candidates), config)
    subsets = enumerate_subsets(len(probe.candidates), config.sample, config.seed)  # (N, k)
    logger.info(
        "probing %d contexts (%d candidates %s, targets %s, %s) in batches of %d",
        len(subsets),
        len(probe.candidates),
        list(probe.candidates),
        list(probe.targets),
        "all subsets"
        if len(subsets) == 2 ** len(probe.candidates)
        else f"{len(subsets)} sampled with seed {config.seed}",
        config.batch_size,
    )
    collector = _Collector(probe, config)
    targets = torch.tensor(probe.targets, device=lm.device) + probe.prompt_length  # (T,)
    starts = range(0, len(subsets), config.batch_size)
    for start in tqdm(starts, desc="probe", unit="batch", disable=None, leave=False):
        batch = subsets[start : start + config.batch_size]  # (B, k)
        canvases = build_canvases(probe, batch, lm.mask_token_id).to(lm.device)  # (B, L)
        attention_mask = torch.ones_like(canvases, dtype=torch.bool)  # (B, L)
        positions = targets.expand(len(batch), -1)  # (B, T)
        logits = logits_at(lm, canvases, attention_mask, positions)  # (B, T, V)
        probabilities = logits.float().softmax(dim=-1)  # (B, T, V) float32
        collector.add(batch, probabilities)
    return collector.finish(subsets, TokenText(lm.tokenizer))


class TokenText:
    """Decode single token ids, caching each text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self.cache:
            self.cache[token_id] = self.tokenizer.decode([token_id])
        return self.cache[token_id]


class _Collector:
    """Keep the requested statistics of each batch of distributions, and build the tables."""

    def __init__(self, probe: ResolvedProbe, config: ProbeConfig):
        self.probe = probe
        self.config = config
        # allocated at the first batch, whose logits fix V (it can exceed the tokenizer's length)
        self.size_sums: torch.Tensor | None = None  # (k + 1, T, V) float64
        self.size_counts = torch.zeros(len(probe.candidates) + 1, dtype=torch.int64)  # (k + 1,)
        self.reference = torch.tensor([probe.answer_ids[t] for t in probe.targets])  # (T,)
        self.batches: list[dict[str, np.ndarray]] = []
        self.distributions: list[torch.Tensor] = []

    def add(self, subsets: np.ndarray, probabilities: torch.Tensor) -> None:
        """Take a (B, k) batch of visible sets and their (B, T, V) float32 distributions."""
        assert probabilities.ndim == 3, f"expected (B, T, V), got {tuple(probabilities.shape)}"
        if self.size_sums is None:
            shape = (len(self.size_counts), *probabilities.shape[1:])
            self.size_sums = torch.zeros(shape, dtype=torch.float64)
        top_k = min(self.config.top_k, probabilities.shape[-1])
        reference = self.reference.to(probabilities.device).expand(len(subsets), -1)  # (B, T)
        reference_probability = probabilities.gather(-1, reference[..., None])  # (B, T, 1)
        argmax_probability, argmax_id = probabilities.max(dim=-1)  # (B, T)
        top_probability, top_id = probabilities.topk(top_k, dim=-1)  # (B, T, top_k)
        stats = {
            "reference_probability": reference_probability[..., 0],
            # rank 1 is the most probable; ties with the reference do not push it down
            "reference_rank": (probabilities > reference_probability).sum(dim=-1) + 1,
            "argmax_id": argmax_id,
            "argmax_probability": argmax_probability,
            "entropy": torch.special.entr(probabilities).sum(dim=-1),  # nats
            "top_probability": top_probability,
            "top_id": top_id,
        }
        self.batches.append({name: value.cpu().numpy() for name, value in stats.items()})

        # sum per visible-set size in float64; float32 rounding could reach n x 6e-8 over n terms
        sizes = torch.from_numpy(subsets.sum(axis=1))  # (B,)
        self.size_sums.index_add_(0, sizes, probabilities.double().cpu())
        self.size_counts += torch.bincount(sizes, minlength=len(self.size_counts))
        if self.config.full:
            self.distributions.append(probabilities.cpu())

    def finish(self, subsets: np.ndarray, token_text: TokenText) -> ProbeResult:
        arrays = {name: np.concatenate([b[name] for b in self.batches]) for name in self.batches[0]}
        contexts = pd.DataFrame(describe_contexts(self.probe, subsets, token_text))
        return ProbeResult(
            probe=self.probe,
            config=self.config,
            contexts=contexts,
            experts=self._experts_frame(contexts, arrays, token_text),
            tokens=self._tokens_frame(contexts, arrays, token_text),
            size_sums=self.size_sums,
            size_counts=self.size_counts,
            distributions=torch.cat(self.distributions) if self.config.full else None,
            token_text=token_text,
        )

    def _experts_frame(self, contexts, arrays, token_text) -> pd.DataFrame:
        num_contexts, num_targets = arrays["entropy"].shape
        frame = contexts.loc[contexts.index.repeat(num_targets)].reset_index(drop=True)
        frame["target"] = np.tile(self.probe.targets, num_contexts)
        frame["reference_id"] = np.tile(self.reference.numpy(), num_contexts)
        frame["reference_token"] = frame["reference_id"].map(token_text)
        for name in EXPERT_STATS:
            frame[name] = arrays[name].reshape(-1)
        frame["argmax_token"] = frame["argmax_id"].map(token_text)
        frame["argmax_is_reference"] = frame["argmax_id"] == frame["reference_id"]
        return frame.sort_values(["target", "context"], kind="stable", ignore_index=True)

    def _tokens_frame(self, contexts, arrays, token_text) -> pd.DataFrame:
        num_contexts, num_targets, top_k = arrays["top_id"].shape
        top = pd.DataFrame(
            {
                "context": np.repeat(np.arange(num_contexts), num_targets * top_k),
                "target": np.tile(np.repeat(self.probe.targets, top_k), num_contexts),
                "token_id": arrays["top_id"].reshape(-1),
                "probability": arrays["top_probability"].reshape(-1),
                "rank": np.tile(np.arange(1, top_k + 1), num_contexts * num_targets),
            }
        )

        # the reference token gets its own row wherever the top k leave it out
        reference = self.reference.numpy()[None, :, None]  # (1, T, 1)
        low = ~(arrays["top_id"] == reference).any(axis=-1)  # (N, T)
        context_index, target_index = np.nonzero(low)
        below = pd.DataFrame(
            {
                "context": context_index,
                "target": np.asarray(self.probe.targets)[target_index],
                "token_id": self.reference.numpy()[target_index],
                "probability": arrays["reference_probability"][low],
                "rank": arrays["reference_rank"][low],
            }
        )
        frame = pd.concat([top, below], ignore_index=True)
        frame = frame.sort_values(["context", "target", "rank"], kind="stable", ignore_index=True)
        frame["token"] = frame["token_id"].map(token_text)
        frame["is_reference"] = frame["token_id"].to_numpy() == self._reference_at(frame["target"])
        frame = frame.merge(contexts, on="context", how="left")
        columns = ["context", "visible", "size", "target", "token_id", "token", "probability"]
        return frame[columns + ["rank", "is_reference", "shown"]]

    def _reference_at(self, targets: pd.Series) -> np.ndarray:
        by_target = dict(zip(self.probe.targets, self.reference.tolist(), strict=True))
        return targets.map(by_target).to_numpy()
