"""What semi-AR decoding shows a target slot: the block-size sweep and the semi-AR gate.

Each block size in a list decodes the probe's prompt once per seed with `hexlab.decode`, watching
the target positions. Two facts are read from the trajectories:

- the distribution at a target at the forward pass that revealed it (`block_size_sweep`), from the
  engine's watched positions;
- which candidates had been revealed before that pass, the visible set U the block size exposes
  (`revealed_visible_sets`). Giving each decoding path equal weight on its U is the semi-AR gate
  (`semi_ar_gate`), which `hexlab.probe.mixture` can use like any other gate.

NOTE: the probe's expert for U conditions on the reference tokens at U, while decoding conditions
on the tokens it wrote there. The column `matches_reference` of `revealed_visible_sets` marks the
paths where the two agree.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pandas as pd

from hexlab.probe.contexts import ProbeSpec, ResolvedProbe, format_visible, resolve_probe
from hexlab.probe.experts import TokenText
from hexlab.probe.summary import GATE_COLUMNS

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The decoding paths of a block-size sweep: one per block size and seed.

    `steps` None gives ceil(G / 2) forward passes, two tokens per step as in HEX, raised to the
    number of blocks where a small block size needs more. An explicit `steps` is used as given.
    """

    block_sizes: tuple[int, ...] = (2, 4, 8, 16, 32)
    steps: int | None = None
    remasking: str = "low_confidence"
    temperature: float = 0.0
    seeds: tuple[int, ...] = (0,)
    top_k: int = 10  # tokens kept per distribution, plus the reference
    batch_size: int = 64  # decoding rows per forward pass

    def __post_init__(self):
        object.__setattr__(self, "block_sizes", tuple(self.block_sizes))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.block_sizes or not self.seeds:
            raise ValueError("a sweep needs at least one block size and one seed")


def decode_block_sizes(lm, probe: ResolvedProbe, config: SweepConfig):
    """Decode the probe's prompt once per block size and seed, watching the targets.

    Returns `hexlab.decode.Trajectories` whose row r is path r of `sweep_paths`.
    """
    from hexlab.decode import DecodeConfig, decode

    gen_length = len(probe.answer_ids)
    rows = [(list(probe.prompt_ids), path) for path in sweep_paths(gen_length, config)]
    decode_config = DecodeConfig(
        batch_size=config.batch_size, top_k=1, watch_positions=probe.targets
    )
    return decode(lm, rows, gen_length, decode_config)


def sweep_paths(gen_length: int, config: SweepConfig) -> list:
    """Build the `hexlab.decode.PathSpec` of each (block size, seed), block sizes outermost."""
    from hexlab.decode import PathSpec

    paths = []
    for block_size in config.block_sizes:
        steps = config.steps
        if steps is None:
            steps = max(math.ceil(gen_length / 2), math.ceil(gen_length / block_size))
        for seed in config.seeds:
            paths.append(
                PathSpec.uniform(
                    block_size,
                    gen_length,
                    steps=steps,
                    remasking=config.remasking,
                    temperature=config.temperature,
                    seed=seed,
                )
            )
    return paths


def _path_rows(config: SweepConfig):
    """(row, block size, seed) in the order of `sweep_paths`."""
    pairs = [(b, s) for b in config.block_sizes for s in config.seeds]
    return [(row, block_size, seed) for row, (block_size, seed) in enumerate(pairs)]


def revealed_visible_sets(probe: ResolvedProbe, trajectories, config: SweepConfig) -> pd.DataFrame:
    """For each path and target: the step that revealed the target and the candidates shown then.

    Columns: block_size, seed, target, reveal_step, visible (a label as in `ProbeResult.contexts`)
    and matches_reference (whether decoding wrote the reference token at every shown candidate).
    A target the path never revealed gets reveal_step -1 and no visible set.
    """
    rows = []
    candidates = np.asarray(probe.candidates, dtype=np.int64)
    reference = np.asarray(probe.answer_ids)
    for row, block_size, seed in _path_rows(config):
        index = trajectories.index_of(row)
        reveal_step = trajectories.reveal_step[index].astype(np.int64)  # (G,)
        tokens = trajectories.tokens[index]  # (G,)
        for target in probe.targets:
            step = int(reveal_step[target])
            # a candidate is visible at pass `step` when an earlier pass revealed it
            shown = candidates[(reveal_step[candidates] >= 0) & (reveal_step[candidates] < step)]
            rows.append(
                {
                    "block_size": block_size,
                    "seed": seed,
                    "target": target,
                    "reveal_step": step,
                    "visible": format_visible(shown.tolist()) if step >= 0 else None,
                    "matches_reference": bool((tokens[shown] == reference[shown]).all()),
                }
            )
    return pd.DataFrame(rows)


def semi_ar_gate(result, revealed: pd.DataFrame) -> pd.DataFrame:
    """Gate each path's exposed visible set with weight 1 / (paths) at each target.

    `result` is a `ProbeResult` and `revealed` the output of `revealed_visible_sets`. Paths whose
    visible set the probe did not enumerate (a sampled probe) are dropped with a warning and the
    rest renormalized; ValueError when none is left at a target.
    """
    context_of = dict(zip(result.contexts["visible"], result.contexts["context"], strict=True))
    frame = revealed.dropna(subset=["visible"])
    frame = frame.assign(context=frame["visible"].map(context_of))
    missing = frame["context"].isna()
    if missing.any():
        logger.warning(
            "%d of %d decoding paths exposed visible sets the probe lacks (%s); "
            "they are left out of the semi-AR gate",
            int(missing.sum()),
            len(frame),
            ", ".join(sorted(set(frame.loc[missing, "visible"]))[:5]),
        )
    frame = frame[~missing]
    absent = sorted(set(result.probe.targets) - set(frame["target"]))
    if absent:
        raise ValueError(
            f"no decoding path exposed a probed visible set at targets {absent}; probe every "
            f"subset (no sample) or decode more block sizes"
        )
    frame = frame.assign(weight=1.0 / frame.groupby("target")["target"].transform("size"))
    gate = frame.groupby(["target", "context"], as_index=False)["weight"].sum()
    gate["context"] = gate["context"].astype(np.int64)
    return gate[GATE_COLUMNS]


def block_size_sweep(lm, spec: ProbeSpec, config: SweepConfig | None = None):
    """Decode with each block size and read each target's distribution when it is revealed.

    Returns (sweep, revealed, trajectories). `sweep` has tidy rows block_size, seed, target,
    reveal_step, token_id, token, probability, rank, is_reference, decoded (the token decoding
    wrote): the top-k tokens plus the reference. `revealed` is `revealed_visible_sets`.
    Probabilities are the engine's float16 records, so they carry about 3 significant digits.
    """
    config = config or SweepConfig()
    probe = resolve_probe(lm, spec)
    trajectories = decode_block_sizes(lm, probe, config)
    revealed = revealed_visible_sets(probe, trajectories, config)
    token_text = TokenText(lm.tokenizer)
    rows = []
    for (row, block_size, seed), target in _each_path_target(config, probe.targets):
        index = trajectories.index_of(row)
        step = int(trajectories.reveal_step[index, target])
        if step < 0:
            logger.warning(
                "path %d (block size %d) never revealed target %d", row, block_size, target
            )
            continue
        watched = trajectories.watched_distributions(row)  # (nfe, W, V) float16
        distribution = watched[step, probe.targets.index(target)].astype(np.float64)  # (V,)
        decoded = int(trajectories.tokens[index, target])
        for token_id, probability, rank in _top_with_reference(
            distribution, probe.answer_ids[target], config.top_k
        ):
            rows.append(
                {
                    "block_size": block_size,
                    "seed": seed,
                    "target": target,
                    "reveal_step": step,
                    "token_id": token_id,
                    "token": token_text(token_id),
                    "probability": probability,
                    "rank": rank,
                    "is_reference": token_id == probe.answer_ids[target],
                    "decoded": token_text(decoded),
                }
            )
    return pd.DataFrame(rows), revealed, trajectories


def _each_path_target(config: SweepConfig, targets):
    return [(path, target) for path in _path_rows(config) for target in targets]


def _top_with_reference(distribution: np.ndarray, reference: int, top_k: int):
    """(token id, probability, rank) of the top k tokens, then the reference if it is not among
    them; rank 1 is the most probable."""
    order = np.argsort(-distribution, kind="stable")[:top_k]
    picked = [(int(t), float(distribution[t]), rank + 1) for rank, t in enumerate(order)]
    if reference not in order:
        rank = int((distribution > distribution[reference]).sum()) + 1
        picked.append((reference, float(distribution[reference]), rank))
    return picked
