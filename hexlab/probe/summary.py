"""Agreement between experts and their mixtures under a gate.

A gate is a DataFrame (target, context, weight) whose weights sum to 1 for each target. The mixture
under it is p(x_t) = sum over contexts U of weight(t, U) * p(x_t | prompt, x[U]). Three gates are
built in: uniform over all contexts, uniform over visible-set sizes then uniform within a size, and
the gate induced by semi-AR decoding (`hexlab.probe.sweep.semi_ar_gate`).

Jensen-Shannon divergences are in bits, so they lie in [0, 1].
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)

GATE_COLUMNS = ["target", "context", "weight"]
MAX_JS_PAIRS = 200_000  # above this many pairs of contexts, mean JS uses a seeded sample of pairs
_JS_CHUNK_ELEMENTS = 2**22  # pairs x vocabulary entries evaluated at once (32 MB in float64)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Return the Jensen-Shannon divergence in bits between distributions on the last axis.

    JS(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2, computed in float64. `p` and `q` broadcast
    against each other; the result drops the last axis.
    """
    p, q = p.double(), q.double()
    entropy = torch.special.entr
    divergence = entropy((p + q) / 2).sum(-1) - (entropy(p).sum(-1) + entropy(q).sum(-1)) / 2
    # rounding can leave -1e-17 for identical inputs; the divergence itself is never negative
    return (divergence / math.log(2)).clamp(min=0.0)


def pairwise_js(distributions: torch.Tensor) -> torch.Tensor:
    """Return the (N, N) float64 matrix of JS divergences between N distributions (N, V)."""
    assert distributions.ndim == 2, f"expected (N, V), got {tuple(distributions.shape)}"
    n = distributions.shape[0]
    first, second = torch.triu_indices(n, n, offset=1)  # (N(N-1)/2,) each
    values = _js_of_pairs(distributions, first, second)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix[first, second] = values
    matrix[second, first] = values
    return matrix


def mean_pairwise_js(
    distributions: torch.Tensor, max_pairs: int = MAX_JS_PAIRS, seed: int = 0
) -> tuple[float, int]:
    """Return the mean JS divergence over pairs of distinct rows of (N, V), and the pairs used.

    All N(N-1)/2 pairs are used when there are at most `max_pairs`. Otherwise `max_pairs` pairs
    drawn uniformly with replacement by a seeded generator give an unbiased estimate of the mean.
    """
    n = distributions.shape[0]
    if n < 2:
        return float("nan"), 0
    if n * (n - 1) // 2 <= max_pairs:
        first, second = torch.triu_indices(n, n, offset=1)
    else:
        generator = torch.Generator().manual_seed(seed)
        first = torch.randint(n, (max_pairs,), generator=generator)
        # offset in 1..n-1 so the second row always differs from the first
        second = (first + torch.randint(1, n, (max_pairs,), generator=generator)) % n
    values = _js_of_pairs(distributions, first, second)
    return float(values.mean()), len(values)


def _js_of_pairs(
    distributions: torch.Tensor, first: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """JS divergence of rows first[i] and second[i], a chunk of pairs at a time."""
    chunk = max(1, _JS_CHUNK_ELEMENTS // distributions.shape[1])
    parts = [
        js_divergence(distributions[first[s : s + chunk]], distributions[second[s : s + chunk]])
        for s in range(0, len(first), chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def target_distributions(result, target: int) -> tuple[torch.Tensor, str]:
    """Return each context's distribution at `target` as (N, S), and where it came from.

    With the whole distributions kept, S = V and the source is "full". Otherwise the columns are
    the tokens in the top-k table plus one column for the remaining mass, and the source is
    "top-k". NOTE: a token outside one context's top k counts in that context's remainder, so
    divergences from "top-k" rows only approximate the true ones.
    """
    index = result.probe.targets.index(target)
    if result.distributions is not None:
        return result.distributions[:, index], "full"
    rows = result.tokens[result.tokens["target"] == target]
    support = np.sort(rows["token_id"].unique())
    table = np.zeros((len(result.contexts), len(support) + 1))  # (N, S)
    table[rows["context"].to_numpy(), np.searchsorted(support, rows["token_id"])] = rows[
        "probability"
    ]
    table[:, -1] = np.clip(1.0 - table[:, :-1].sum(axis=1), 0.0, None)
    return torch.from_numpy(table), "top-k"


def agreement(result, max_pairs: int = MAX_JS_PAIRS) -> pd.DataFrame:
    """Summarize how much the experts agree at each target.

    Columns: target, contexts, share_argmax_reference (share of experts whose mode is the reference
    token), mean_reference_probability, mean_js (mean pairwise JS divergence in bits), js_pairs
    and js_source ("full" or "top-k", see `target_distributions`).
    """
    rows = []
    for target in result.probe.targets:
        experts = result.experts[result.experts["target"] == target]
        distributions, source = target_distributions(result, target)
        mean_js, pairs = mean_pairwise_js(distributions, max_pairs, seed=result.config.seed)
        rows.append(
            {
                "target": target,
                "contexts": len(experts),
                "share_argmax_reference": float(experts["argmax_is_reference"].mean()),
                "mean_reference_probability": float(experts["reference_probability"].mean()),
                "mean_js": mean_js,
                "js_pairs": pairs,
                "js_source": source,
            }
        )
    return pd.DataFrame(rows)


def uniform_gate(contexts: pd.DataFrame, targets: Sequence[int]) -> pd.DataFrame:
    """Gate every context with weight 1/N at every target."""
    weights = np.full(len(contexts), 1.0 / len(contexts))
    return _gate_for_targets(contexts["context"].to_numpy(), weights, targets)


def size_gate(contexts: pd.DataFrame, targets: Sequence[int]) -> pd.DataFrame:
    """Gate uniformly over the visible-set sizes present, then uniformly within a size.

    With 2 candidates the contexts {}, {0}, {1}, {0,1} have sizes 0, 1, 1, 2, so the weights are
    1/3, 1/6, 1/6, 1/3.
    """
    sizes = contexts["size"]
    per_size = sizes.map(sizes.value_counts()).to_numpy()
    weights = 1.0 / (sizes.nunique() * per_size)
    return _gate_for_targets(contexts["context"].to_numpy(), weights, targets)


def _gate_for_targets(
    context: np.ndarray, weights: np.ndarray, targets: Sequence[int]
) -> pd.DataFrame:
    frames = [pd.DataFrame({"target": t, "context": context, "weight": weights}) for t in targets]
    return pd.concat(frames, ignore_index=True)[GATE_COLUMNS]


def check_gate(gate: pd.DataFrame, contexts: pd.DataFrame) -> None:
    """Raise ValueError unless the gate's weights are non-negative, name known contexts and sum
    to 1 at each target."""
    missing = set(GATE_COLUMNS) - set(gate.columns)
    if missing:
        raise ValueError(f"gate lacks the columns {sorted(missing)}; expected {GATE_COLUMNS}")
    if (gate["weight"] < 0).any():
        raise ValueError("gate has negative weights; weights must be probabilities")
    unknown = sorted(set(gate["context"]) - set(contexts["context"]))
    if unknown:
        raise ValueError(f"gate names contexts {unknown[:10]} that the probe does not contain")
    totals = gate.groupby("target")["weight"].sum()
    if not np.allclose(totals.to_numpy(), 1.0, atol=1e-6):
        raise ValueError(f"gate weights must sum to 1 at each target, got {totals.to_dict()}")


def mix_distributions(table: pd.DataFrame, gate: pd.DataFrame) -> pd.DataFrame:
    """Mix tidy per-context distributions under a gate.

    `table` has columns context, target, token_id, probability (and optionally token). A token
    missing from a context's rows counts as probability 0 there, so from a top-k table each mixed
    probability is a lower bound. Returns columns target, token_id, (token,) probability, sorted by
    target and then by falling probability.
    """
    weighted = table.merge(gate[GATE_COLUMNS], on=["target", "context"], how="inner")
    weighted["probability"] = weighted["probability"] * weighted["weight"]
    keys = ["target", "token_id"] + (["token"] if "token" in table.columns else [])
    mixed = weighted.groupby(keys, as_index=False)["probability"].sum()
    return mixed.sort_values(["target", "probability"], ascending=[True, False], ignore_index=True)


def default_gates(result) -> dict[str, pd.DataFrame]:
    """Build the uniform and size gates over a probe's contexts."""
    return {
        "uniform": uniform_gate(result.contexts, result.probe.targets),
        "size": size_gate(result.contexts, result.probe.targets),
    }


def mixture(result, gate: pd.DataFrame) -> pd.DataFrame:
    """Mix a probe's experts under a gate; returns the columns of `mix_distributions`.

    The mixture is exact over the whole vocabulary when the probe kept the whole distributions, or
    when the gate's weight depends only on the target and |U| (the uniform and size gates do):
    then it is a weighted sum of the per-size sums. Any other gate on a top-k probe falls back to
    `mix_distributions` on the top-k table, whose probabilities are lower bounds.
    """
    check_gate(gate, result.contexts)
    weights = _weight_matrix(result, gate)  # (N, T) float64
    if result.distributions is not None:
        mixed = torch.einsum("nt,ntv->tv", weights, result.distributions.double())  # (T, V)
        return _mixture_frame(result, mixed)
    size_weights = _size_weights(result, weights)
    if size_weights is not None:
        mixed = torch.einsum("st,stv->tv", size_weights, result.size_sums)  # (T, V)
        return _mixture_frame(result, mixed)
    logger.warning(
        "this gate varies within a visible-set size and the probe kept only the top %d tokens, "
        "so mixture probabilities are lower bounds; probe with full=True for exact mixtures",
        result.config.top_k,
    )
    return mix_distributions(result.tokens, gate)


def _weight_matrix(result, gate: pd.DataFrame) -> torch.Tensor:
    """Gate weights as (N, T) float64, zero for contexts the gate leaves out."""
    weights = torch.zeros(len(result.contexts), len(result.probe.targets), dtype=torch.float64)
    target_index = gate["target"].map({t: i for i, t in enumerate(result.probe.targets)})
    if target_index.isna().any():
        raise ValueError(f"gate names targets outside the probe's targets {result.probe.targets}")
    rows = torch.tensor(gate["context"].to_numpy(), dtype=torch.int64)
    columns = torch.tensor(target_index.to_numpy(dtype=np.int64))
    weights.index_put_((rows, columns), torch.tensor(gate["weight"].to_numpy()), accumulate=True)
    return weights


def _size_weights(result, weights: torch.Tensor) -> torch.Tensor | None:
    """Per-size weights (k + 1, T) when weights are constant within each size, else None."""
    sizes = torch.tensor(result.contexts["size"].to_numpy(), dtype=torch.int64)  # (N,)
    per_size = torch.zeros(len(result.size_counts), weights.shape[1], dtype=torch.float64)
    for size in sizes.unique().tolist():
        block = weights[sizes == size]  # (contexts of this size, T)
        if not torch.equal(block.amin(dim=0), block.amax(dim=0)):
            return None
        per_size[size] = block[0]
    return per_size


def _mixture_frame(result, mixed: torch.Tensor) -> pd.DataFrame:
    """Tidy rows from a (T, V) mixture."""
    num_targets, vocab = mixed.shape
    frame = pd.DataFrame(
        {
            "target": np.repeat(result.probe.targets, vocab),
            "token_id": np.tile(np.arange(vocab), num_targets),
            "probability": mixed.reshape(-1).numpy(),
        }
    )
    frame.insert(2, "token", frame["token_id"].map(result.token_text))
    return frame.sort_values(["target", "probability"], ascending=[True, False], ignore_index=True)


def mixture_summary(result, gates: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Summarize the mixture under each gate at each target.

    Columns: gate, target, reference_token, reference_probability, reference_rank (1 = mode),
    argmax_token, argmax_probability, argmax_is_reference. `gates` defaults to `default_gates`.
    """
    rows = []
    for name, gate in (gates or default_gates(result)).items():
        mixed = mixture(result, gate)
        for target, reference_id in result.reference_ids.items():
            ranked = mixed[mixed["target"] == target].reset_index(drop=True)
            match = ranked.index[ranked["token_id"] == reference_id]
            found = len(match) > 0
            reference_probability = float(ranked.loc[match[0], "probability"]) if found else 0.0
            rows.append(
                {
                    "gate": name,
                    "target": target,
                    "reference_token": result.token_text(reference_id),
                    "reference_probability": reference_probability,
                    "reference_rank": int(match[0]) + 1 if found else None,
                    "argmax_token": ranked.loc[0, "token"],
                    "argmax_probability": float(ranked.loc[0, "probability"]),
                    "argmax_is_reference": int(ranked.loc[0, "token_id"]) == reference_id,
                }
            )
    return pd.DataFrame(rows)
