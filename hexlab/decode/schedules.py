"""Decoding paths: block schedule, steps, remasking rule, temperature, seed and EOS handling.

A path reveals the answer window of G positions block by block, left to right. Each block gets a
share of the forward passes (steps), and inside a block each step reveals a fixed number of the
still-masked positions:

    answer window (G = 32), blocks [8, 8, 16], steps = 16 -> 6, 5, 5 steps per block
    | block 0: 8 pos, 6 steps | block 1: 8 pos, 5 steps | block 2: 16 pos, 5 steps     |
    | reveal 2 2 1 1 1 1      | reveal 2 2 2 1 1        | reveal 4 3 3 3 3             |

Steps are split evenly across blocks whatever their sizes: with `steps` forward passes and `nb`
blocks, every block gets steps // nb steps and the first steps % nb blocks get one more. Within a
block of n positions and s steps, each step reveals n // s tokens and the first n % s steps reveal
one more (`transfer_counts`). A step that reveals nothing (s > n) changes nothing, so the decoders
skip it and it costs no forward pass.
"""

from __future__ import annotations

import dataclasses
import math

REMASKING_RULES = ("low_confidence", "top_k_margin", "random", "entropy")
EOS_OPTIONS = (None, "forbid", "no_confidence")

# Short forms of the non-default options, used in path labels.
_RULE_LABELS = {"top_k_margin": "margin", "random": "random", "entropy": "entropy"}
_EOS_LABELS = {"forbid": "eos-forbid", "no_confidence": "eos-noconf"}


@dataclasses.dataclass(frozen=True)
class Step:
    """One forward pass of a path: reveal `count` positions of the block [start, end).

    `start` and `end` are answer-window positions (0 is the first answer token).
    """

    start: int
    end: int
    count: int


def transfer_counts(num_masked: int, steps: int) -> list[int]:
    """Split `num_masked` reveals over `steps` steps: n // s each, the first n % s get one more.

    >>> transfer_counts(8, 3)
    [3, 3, 2]
    """
    if num_masked < 0 or steps < 1:
        raise ValueError(
            f"invalid transfer split: {num_masked} positions over {steps} steps; "
            f"need at least 0 positions and at least 1 step"
        )
    base, extra = divmod(num_masked, steps)
    return [base + 1 if i < extra else base for i in range(steps)]


def split_steps(steps: int, num_blocks: int) -> list[int]:
    """Steps per block: steps // nb each, the first steps % nb blocks get one more.

    >>> split_steps(16, 3)
    [6, 5, 5]
    """
    if num_blocks < 1 or steps < num_blocks:
        raise ValueError(
            f"cannot split {steps} steps over {num_blocks} blocks: every block needs at "
            f"least one step, so give steps >= {max(num_blocks, 1)}"
        )
    return transfer_counts(steps, num_blocks)


@dataclasses.dataclass(frozen=True)
class PathSpec:
    """One decoding path.

    Attributes:
        block_sizes: sizes of the consecutive blocks, left to right; they sum to the answer window.
        steps: forward passes in total before skipping steps that reveal nothing.
        remasking: which masked positions a step reveals first, one of `REMASKING_RULES`:
            "low_confidence" (highest probability of the proposal under the untempered
            softmax), "top_k_margin" (largest top-1 minus top-2 probability), "random"
            (uniform scores) or "entropy" (lowest entropy of the position's distribution).
        temperature: 0 proposes the argmax; T > 0 samples from softmax(logits / T).
        seed: seed of the row's own random generator (Gumbel noise and random scores). Two rows
            with the same seed draw the same stream.
        eos: None, "forbid" (the end-of-text token is removed from the distribution) or
            "no_confidence" (end-of-text and end-of-turn proposals are revealed last).
    """

    block_sizes: tuple[int, ...]
    steps: int
    remasking: str = "low_confidence"
    temperature: float = 0.0
    seed: int = 0
    eos: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "block_sizes", tuple(self.block_sizes))
        _validate(self)

    @classmethod
    def uniform(
        cls,
        block_size: int,
        gen_length: int,
        *,
        steps: int | None = None,
        tokens_per_step: int | None = None,
        **options,
    ) -> PathSpec:
        """Blocks of `block_size` over `gen_length`; a remainder becomes a shorter last block.

        Give either `steps` or `tokens_per_step` (steps = ceil(gen_length / tokens_per_step)).
        `options` are the remaining `PathSpec` fields.
        """
        if not (_is_int(block_size) and _is_int(gen_length)) or not 0 < block_size <= gen_length:
            raise ValueError(
                f"invalid block size {block_size!r} for gen_length {gen_length!r}: need "
                f"0 < block_size <= gen_length (one block is block_size = gen_length)"
            )
        full, rest = divmod(gen_length, block_size)
        sizes = [block_size] * full + ([rest] if rest else [])
        return cls(tuple(sizes), _resolve_steps(gen_length, steps, tokens_per_step), **options)

    @classmethod
    def from_sizes(
        cls,
        block_sizes,
        gen_length: int | None = None,
        *,
        steps: int | None = None,
        tokens_per_step: int | None = None,
        **options,
    ) -> PathSpec:
        """Any list of block sizes, for example the two-block schedule [a, G - a].

        When `gen_length` is given, the sizes must sum to it.
        """
        sizes = tuple(block_sizes)
        total = sum(sizes)
        if gen_length is not None and total != gen_length:
            raise ValueError(
                f"block sizes {list(sizes)} sum to {total}, not to gen_length {gen_length}: "
                f"change the sizes so they cover the answer window exactly"
            )
        return cls(sizes, _resolve_steps(total, steps, tokens_per_step), **options)

    @property
    def gen_length(self) -> int:
        return sum(self.block_sizes)

    @property
    def is_stochastic(self) -> bool:
        """Whether the seed changes the output (sampling or random remasking)."""
        return self.temperature > 0 or self.remasking == "random"

    def steps_per_block(self) -> list[int]:
        return split_steps(self.steps, len(self.block_sizes))

    def plan(self) -> list[Step]:
        """List the forward passes of this path in order, without steps that reveal nothing."""
        steps = []
        start = 0
        for size, block_steps in zip(self.block_sizes, self.steps_per_block()):
            for count in transfer_counts(size, block_steps):
                if count > 0:
                    steps.append(Step(start, start + size, count))
            start += size
        return steps

    @property
    def nfe(self) -> int:
        """Forward passes this path takes: sum over blocks of min(block size, block steps)."""
        return sum(min(n, s) for n, s in zip(self.block_sizes, self.steps_per_block()))

    @property
    def label(self) -> str:
        """A short name for tables, such as "b8", "b8+24" or "b8/s3/T0.9".

        The step count appears only when it differs from gen_length / 2 (two tokens per step), and
        the seed only when it changes the output.
        """
        parts = [_blocks_label(self.block_sizes)]
        if 2 * self.steps != self.gen_length:
            parts.append(f"steps{self.steps}")
        if self.is_stochastic:
            parts.append(f"s{self.seed}")
        if self.temperature > 0:
            parts.append(f"T{self.temperature:g}")
        if self.remasking in _RULE_LABELS:
            parts.append(_RULE_LABELS[self.remasking])
        if self.eos is not None:
            parts.append(_EOS_LABELS[self.eos])
        return "/".join(parts)


def _blocks_label(sizes: tuple[int, ...]) -> str:
    """ "b8" for uniform blocks (a shorter last block included), else "b" + sizes joined by "+"."""
    first = sizes[0]
    uniform = all(size == first for size in sizes[:-1]) and sizes[-1] <= first
    if uniform:
        return f"b{first}"
    return "b" + "+".join(str(size) for size in sizes)


def _resolve_steps(gen_length: int, steps: int | None, tokens_per_step: int | None) -> int:
    if (steps is None) == (tokens_per_step is None):
        raise ValueError(
            f"give exactly one of steps ({steps!r}) and tokens_per_step ({tokens_per_step!r}); "
            f"HEX uses steps = gen_length / 2"
        )
    if steps is not None:
        return steps
    if not _is_int(tokens_per_step) or tokens_per_step < 1:
        raise ValueError(f"invalid tokens_per_step {tokens_per_step!r}: give a positive integer")
    return math.ceil(gen_length / tokens_per_step)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(spec: PathSpec) -> None:
    """Raise ValueError naming the first invalid field of `spec` and how to fix it."""
    sizes = spec.block_sizes
    if not sizes:
        raise ValueError("block_sizes is empty: give at least one block size")
    for size in sizes:
        if not _is_int(size) or size < 1:
            raise ValueError(
                f"invalid block size {size!r} in {list(sizes)}: every block needs a positive "
                f"integer number of positions"
            )
    if not _is_int(spec.steps) or spec.steps < len(sizes):
        raise ValueError(
            f"steps={spec.steps!r} is fewer than the {len(sizes)} blocks of {list(sizes)}: give "
            f"steps >= {len(sizes)} so every block gets at least one forward pass"
        )
    if spec.remasking not in REMASKING_RULES:
        raise ValueError(
            f"unknown remasking {spec.remasking!r}: use one of {', '.join(REMASKING_RULES)}"
        )
    if not isinstance(spec.temperature, (int, float)) or not spec.temperature >= 0:
        raise ValueError(
            f"invalid temperature {spec.temperature!r}: use 0 for argmax decoding or a positive "
            f"number to sample from softmax(logits / T)"
        )
    if not _is_int(spec.seed):
        raise ValueError(f"invalid seed {spec.seed!r}: give an integer")
    if spec.eos not in EOS_OPTIONS:
        raise ValueError(f"unknown eos option {spec.eos!r}: use None, 'forbid' or 'no_confidence'")
