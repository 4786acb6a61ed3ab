"""Batched decoding of many (prompt, path) rows with per-row schedules, seeds and temperatures.

Dimension letters: B rows in a batch, A rows still decoding, L canvas length, G answer window,
N candidate slots of a step (the largest count of masked positions in any active block), W watched
positions, V vocabulary, S reveals in one step.

Each batch canvas holds the left-padded prompts, then G mask tokens:

    row 0: [pad pad p p p p | m m m m m m m m]    attention mask 0 on pad, 1 elsewhere
    row 1: [p p p p p p p p | m m m m m m m m]
                              ^ answer position 0 (canvas column L - G)

Every step is one forward pass over the rows still decoding. Each row reveals tokens in its own
current block following its own path (`PathSpec`), and draws random numbers only from its own
generator, in the same order whatever batch it is in. The LM head runs only at the candidate
positions, so a step's memory grows with A x N x V, not A x L x V. Rows whose path has finished
leave the batch. Steps that reveal nothing are not in any plan.

NOTE: batch invariance is exact for the random draws; the logits of a padded row can differ from
the same row alone by float rounding (about 1e-6 in float32), which changes a token only at a
near-tie.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence

import torch

from hexlab.decode.forward import logits_at
from hexlab.decode.sampling import (
    demote_stop_proposals,
    fill_uniform_,
    forbid_token,
    gumbel_argmax_,
    make_generator,
    rule_scores,
    select_reveals,
)
from hexlab.decode.schedules import PathSpec
from hexlab.decode.trajectory import BatchRecorder, DecodeStats, Trajectories

logger = logging.getLogger(__name__)

Row = tuple[Sequence[int], PathSpec]

# Cap on the float64 Gumbel noise of one step; rows beyond it are sampled in further chunks.
_NOISE_BYTES = 2**30


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """Settings of a decoding run that are not part of any path.

    Attributes:
        batch_size: rows per forward pass; rows are batched in the order given.
        top_k: alternatives recorded at each revealed position.
        watch_positions: answer positions whose whole distribution is recorded at every step.
        progress: True for a progress bar on a terminal, or a callable(rows_done, rows_total)
            called after each batch.
    """

    batch_size: int = 64
    top_k: int = 5
    watch_positions: tuple[int, ...] = ()
    progress: bool | Callable[[int, int], None] = False

    def __post_init__(self):
        object.__setattr__(self, "watch_positions", tuple(self.watch_positions))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"invalid batch_size {self.batch_size!r}: give a positive integer")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"invalid top_k {self.top_k!r}: give a positive integer")
        if not (isinstance(self.progress, bool) or callable(self.progress)):
            raise ValueError(f"invalid progress {self.progress!r}: give True, False or a callable")


def decode(
    lm, rows: Sequence[Row], gen_length: int, config: DecodeConfig = DecodeConfig()
) -> Trajectories:
    """Decode every (prompt ids, path) row and return all trajectories, in row order."""
    parts = list(decode_batches(lm, rows, gen_length, config))
    if not parts:
        raise ValueError("no rows to decode: give at least one (prompt ids, PathSpec) row")
    return Trajectories.concat(parts)


def decode_batches(
    lm, rows: Sequence[Row], gen_length: int, config: DecodeConfig = DecodeConfig()
) -> Iterator[Trajectories]:
    """Decode the rows batch by batch, yielding each batch's trajectories as it completes.

    Rows are checked before anything runs; a prompt plus the answer window longer than the
    model's `max_length` raises ValueError. Each yielded `Trajectories` names its rows by their
    index in `rows` (`row_ids`).
    """
    rows = list(rows)
    _validate_rows(lm, rows, gen_length, config)
    labels = list(dict.fromkeys(spec.label for _, spec in rows))  # first-seen order
    shown = ", ".join(labels[:10])
    if len(labels) > 10:
        shown += f", ... ({len(labels) - 10} more)"
    logger.debug(
        "decoding %d rows, gen_length %d, %d paths (%s), %s, on %s",
        len(rows),
        gen_length,
        len(labels),
        shown,
        config,
        lm.device,
    )
    return _iterate_batches(lm, rows, gen_length, config)


def _iterate_batches(
    lm, rows: list[Row], gen_length: int, config: DecodeConfig
) -> Iterator[Trajectories]:
    bar = None
    if config.progress is True:
        from tqdm.auto import tqdm

        # disable=None turns the bar off when the output is not a terminal
        bar = tqdm(total=len(rows), desc="decode", unit="row", disable=None)
    for first in range(0, len(rows), config.batch_size):
        row_ids = list(range(first, min(first + config.batch_size, len(rows))))
        batch = _Batch.build(lm, [rows[i] for i in row_ids], row_ids, gen_length)
        trajectories = _decode_batch(lm, batch, gen_length, config)
        done = row_ids[-1] + 1
        if bar is not None:
            bar.update(len(row_ids))
        elif callable(config.progress):
            config.progress(done, len(rows))
        logger.debug("decoded rows %d..%d: %s", first, done - 1, trajectories.stats)
        yield trajectories
    if bar is not None:
        bar.close()


def _validate_rows(lm, rows: list[Row], gen_length: int, config: DecodeConfig) -> None:
    """Raise ValueError on the first row or setting the decoder cannot run."""
    for position in config.watch_positions:
        if not 0 <= position < gen_length:
            raise ValueError(
                f"watch position {position} is outside the answer window 0..{gen_length - 1}"
            )
    if config.top_k > lm.vocab_size:
        raise ValueError(f"top_k {config.top_k} exceeds the vocabulary size {lm.vocab_size}")
    for index, row in enumerate(rows):
        if len(row) != 2 or not isinstance(row[1], PathSpec):
            raise ValueError(f"row {index} is not a (prompt ids, PathSpec) pair: {row!r}")
        prompt, spec = row
        if spec.gen_length != gen_length:
            raise ValueError(
                f"row {index}: path {spec.label} has blocks {list(spec.block_sizes)} summing to "
                f"{spec.gen_length}, not gen_length {gen_length}; build it for this window, e.g. "
                f"PathSpec.uniform(block_size, {gen_length}, steps=...)"
            )
        total = len(prompt) + gen_length
        if lm.max_length is not None and total > lm.max_length:
            raise ValueError(
                f"row {index}: prompt of {len(prompt)} tokens plus gen_length {gen_length} is "
                f"{total} tokens, above the model's max_length {lm.max_length}; shorten the "
                f"prompt or the answer window"
            )


@dataclasses.dataclass
class _Batch:
    """One batch of rows on the model's device."""

    row_ids: list[int]
    specs: list[PathSpec]
    prompt_lengths: list[int]
    canvas: torch.Tensor  # (B, L) int64: left padding, prompt, answer window
    left_padding: torch.Tensor  # (B,) int64 padding columns per row
    plan: torch.Tensor  # (B, S_max, 3) int64 (block start, block end, count) of each step
    nfe: torch.Tensor  # (B,) int64 steps in each row's plan
    generators: list[torch.Generator]

    @classmethod
    def build(cls, lm, rows: list[Row], row_ids: list[int], gen_length: int) -> _Batch:
        device = lm.device
        prompts = [list(prompt) for prompt, _ in rows]
        specs = [spec for _, spec in rows]
        width = max(len(prompt) for prompt in prompts)
        # the padding id is arbitrary: the attention mask hides it
        canvas = [
            [lm.eos_token_id] * (width - len(prompt)) + prompt + [lm.mask_token_id] * gen_length
            for prompt in prompts
        ]
        plans = [spec.plan() for spec in specs]
        plan = torch.zeros(len(rows), max(len(p) for p in plans), 3, dtype=torch.long)
        for row, steps in enumerate(plans):
            plan[row, : len(steps)] = torch.tensor([[s.start, s.end, s.count] for s in steps])
        return cls(
            row_ids=row_ids,
            specs=specs,
            prompt_lengths=[len(p) for p in prompts],
            canvas=torch.tensor(canvas, dtype=torch.long, device=device),
            left_padding=torch.tensor([width - len(p) for p in prompts], device=device),
            plan=plan.to(device),
            nfe=torch.tensor([len(p) for p in plans], device=device),
            generators=[make_generator(spec.seed, device) for spec in specs],
        )


@torch.inference_mode()
def _decode_batch(lm, batch: _Batch, gen_length: int, config: DecodeConfig) -> Trajectories:
    """Run every row of `batch` to the end of its plan, recording each reveal."""
    started = time.perf_counter()
    device = batch.canvas.device
    num_rows, canvas_length = batch.canvas.shape
    offset = canvas_length - gen_length  # canvas column of answer position 0
    watch = torch.tensor(config.watch_positions, dtype=torch.long, device=device)  # (W,)
    answer_columns = torch.arange(gen_length, device=device)  # (G,)
    step = torch.zeros(num_rows, dtype=torch.long, device=device)  # (B,) steps taken
    is_masked = torch.ones(num_rows, gen_length, dtype=torch.bool, device=device)  # (B, G)
    recorder = BatchRecorder(num_rows, gen_length, config.top_k, len(watch), lm.mask_token_id)
    stats = DecodeStats()

    while True:
        # rows still decoding; finished rows leave the batch
        active = (step < batch.nfe).nonzero().squeeze(1)  # (A,)
        if active.numel() == 0:
            break
        start, end, count = batch.plan[active, step[active]].unbind(1)  # (A,) each

        # candidates: still-masked answer positions of each row's current block, leftmost first
        in_block = (answer_columns >= start[:, None]) & (answer_columns < end[:, None])  # (A, G)
        is_candidate = is_masked[active] & in_block
        num_candidates = is_candidate.sum(1)  # (A,)
        width = int(num_candidates.max())
        order = torch.argsort((~is_candidate).to(torch.int8), dim=1, stable=True)
        positions = order[:, :width]  # (A, N) answer positions, candidates first
        valid = torch.arange(width, device=device) < num_candidates[:, None]  # (A, N)

        # one forward pass; the LM head runs only at candidate and watched positions
        columns = torch.cat([positions, watch.expand(len(active), -1)], dim=1) + offset
        logits = _forward(lm, batch, active, columns, stats)  # (A, N + W, V) float32
        _apply_forbid(logits, lm, batch, active)

        # propose tokens and score the candidates
        counts, active_rows = num_candidates.tolist(), active.tolist()
        proposal = _propose(logits[:, :width], counts, active_rows, batch)  # (A, N)
        probs = logits[:, :width].softmax(dim=-1)  # (A, N, V) untempered
        scores = _score(probs, proposal, counts, active_rows, batch, lm)  # (A, N) float64

        # pick positions to reveal and write them
        reveal = select_reveals(scores, valid, count)  # (A, N)
        hit_row, hit_slot = reveal.nonzero(as_tuple=True)  # (S,) each
        rows = active[hit_row]
        revealed_positions = positions[hit_row, hit_slot]
        revealed_tokens = proposal[hit_row, hit_slot]
        batch.canvas[rows, offset + revealed_positions] = revealed_tokens
        is_masked[rows, revealed_positions] = False

        # record what was revealed, and the watched distributions
        top = probs[hit_row, hit_slot].topk(config.top_k, dim=-1)  # (S, k)
        recorder.record_reveals(
            _to_numpy(
                rows=rows,
                positions=revealed_positions,
                steps=step[rows],
                tokens=revealed_tokens,
                confidence=probs[hit_row, hit_slot, revealed_tokens],
                score=scores[hit_row, hit_slot],
                topk_ids=top.indices,
                topk_probs=top.values,
            )
        )
        if len(watch):
            watched = logits[:, width:].softmax(dim=-1).to(torch.float16)  # (A, W, V)
            recorder.record_watched(active.cpu().numpy(), watched.cpu().numpy())
        step[active] += 1
        stats.forward_calls += 1
        stats.row_steps += len(active)

    stats.wall_seconds = time.perf_counter() - started
    return recorder.finish(
        batch.row_ids,
        batch.specs,
        batch.prompt_lengths,
        step.cpu().numpy(),
        gen_length=gen_length,
        mask_token_id=lm.mask_token_id,
        watch_positions=config.watch_positions,
        stats=stats,
    )


def _forward(
    lm, batch: _Batch, active: torch.Tensor, columns: torch.Tensor, stats: DecodeStats
) -> torch.Tensor:
    """Logits (A, N, V) float32 of the active rows at canvas `columns` (A, N), timed."""
    # drop the padding columns that every active row has
    first = int(batch.left_padding[active].min())
    input_ids = batch.canvas[active, first:]  # (A, L')
    padding = batch.left_padding[active] - first  # (A,)
    attention_mask = None
    if bool((padding > 0).any()):
        attention_mask = (
            torch.arange(input_ids.shape[1], device=input_ids.device) >= padding[:, None]
        )
    started = time.perf_counter()
    logits = logits_at(lm, input_ids, attention_mask, columns - first)
    if logits.device.type == "cuda":
        torch.cuda.synchronize(logits.device)
    stats.forward_seconds += time.perf_counter() - started
    return logits.float()


def _apply_forbid(logits: torch.Tensor, lm, batch: _Batch, active: torch.Tensor) -> None:
    """Remove the mask token from every distribution, and end-of-text where a path forbids it.

    The mask token is never a training target, so a trained model gives it almost no mass; an
    undertrained one can still sample it at T > 0, which would leave a position unrevealed.
    """
    forbid_token(logits, lm.mask_token_id)
    forbid = [a for a, row in enumerate(active.tolist()) if batch.specs[row].eos == "forbid"]
    if forbid:
        forbid_token(logits, lm.eos_token_id, rows=None if len(forbid) == len(active) else forbid)


def _propose(
    logits: torch.Tensor, counts: list[int], active: list[int], batch: _Batch
) -> torch.Tensor:
    """(A, N) proposals: argmax for T = 0 rows, Gumbel-max samples from each row's generator."""
    temperatures = [batch.specs[row].temperature for row in active]
    sampled = [a for a, temperature in enumerate(temperatures) if temperature > 0]
    if len(sampled) < len(active):
        proposal = logits.argmax(dim=-1)
    else:
        proposal = torch.empty(logits.shape[:2], dtype=torch.long, device=logits.device)

    # float64 noise for at most _NOISE_BYTES at a time; a padding slot keeps u = 0, noise -inf
    rows_per_chunk = max(1, _NOISE_BYTES // (logits.shape[1] * logits.shape[2] * 8))
    for first in range(0, len(sampled), rows_per_chunk):
        chunk = sampled[first : first + rows_per_chunk]
        uniforms = torch.zeros(
            len(chunk), *logits.shape[1:], dtype=torch.float64, device=logits.device
        )  # (C, N, V)
        for i, a in enumerate(chunk):
            fill_uniform_(uniforms[i, : counts[a]], batch.generators[active[a]])
        temperature = torch.tensor(
            [temperatures[a] for a in chunk], dtype=torch.float64, device=logits.device
        ).view(-1, 1, 1)
        chunk_logits = logits if len(chunk) == len(active) else logits[chunk]
        proposal[chunk] = gumbel_argmax_(uniforms, chunk_logits, temperature)
    return proposal


def _score(
    probs: torch.Tensor,
    proposal: torch.Tensor,
    counts: list[int],
    active: list[int],
    batch: _Batch,
    lm,
) -> torch.Tensor:
    """(A, N) float64 remasking scores, each row by its own rule and EOS option."""
    scores = torch.zeros(proposal.shape, dtype=torch.float64, device=proposal.device)
    rules = [batch.specs[row].remasking for row in active]
    for rule in sorted(set(rules)):
        members = [a for a, r in enumerate(rules) if r == rule]
        if rule == "random":
            for a in members:
                fill_uniform_(scores[a, : counts[a]], batch.generators[active[a]])
        elif len(members) == len(active):
            scores = rule_scores(rule, probs, proposal)
        else:
            scores[members] = rule_scores(rule, probs[members], proposal[members])
    demote = torch.tensor(
        [batch.specs[row].eos == "no_confidence" for row in active], device=proposal.device
    )
    if bool(demote.any()):
        demote_stop_proposals(scores, proposal, lm.stop_token_ids, rows=demote)
    return scores


def _to_numpy(**tensors: torch.Tensor) -> dict:
    return {name: tensor.cpu().numpy() for name, tensor in tensors.items()}
