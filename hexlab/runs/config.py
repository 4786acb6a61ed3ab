"""The configuration of a run and the path presets.

`RunConfig` holds the only defaults; None stands for the model profile's default. The job
(`hexlab.runs.job.make_plan`) resolves those and checks the cross-field rules before anything is
written, so bad input leaves no files behind.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hexlab.decode import PathSpec

PRESETS = ("hex5", "hex25", "two-block25", "baselines", "custom")


@dataclasses.dataclass
class RunConfig:
    """Everything `hexlab run` needs; None means "the model profile's default"."""

    model: str = "toy"
    dataset: str = "toy"
    paths: str = "hex25"
    out: Path | None = None
    limit: int | None = None
    batch_size: int = 64
    device: str | None = None
    dtype: str | None = None
    gen_length: int | None = None
    steps: int | None = None
    # custom paths (--paths custom, or --blocks given)
    blocks: tuple[int, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    temperature: float = 0.0
    remasking: str = "low_confidence"
    # grading, voting and logging
    tie_rule: str = "first"
    top_k: int = 5
    template: str | None = None
    chunk_questions: int | None = None


def hex_block_sizes(gen_length: int, steps: int) -> list[int]:
    """The five HEX block sizes: doubling from G/32 up to G/2 (8..128 for G = 256).

    A block needs at least one step, so the smallest size is raised to G/steps when G/32 is
    smaller; the toy setting (G = 32, 16 steps) gets 2, 4, 8, 16, 32.
    """
    smallest = max(gen_length // 32, -(-gen_length // steps), 1)
    return [min(smallest * 2**i, gen_length) for i in range(5)]


def preset_paths(config: RunConfig, gen_length: int, steps: int) -> list[PathSpec]:
    """Expand a preset into paths, in the order HEX's tie rule reads them (ascending block size)."""
    G = gen_length
    if config.paths == "hex5":
        return [PathSpec.uniform(b, G, steps=steps) for b in hex_block_sizes(G, steps)]
    if config.paths == "hex25":
        return [
            PathSpec.uniform(b, G, steps=steps, temperature=0.9, seed=seed)
            for b in hex_block_sizes(G, steps)
            for seed in range(5)
        ]
    if config.paths == "two-block25":
        # [8i, 256 - 8i] for i = 1..25 at G = 256, scaled to the window
        firsts = sorted({max(1, min(G - 1, round(8 * i * G / 256))) for i in range(1, 26)})
        return [PathSpec.from_sizes((a, G - a), G, steps=steps) for a in firsts]
    if config.paths == "baselines":
        return [
            PathSpec.from_sizes((G,), G, steps=steps, remasking=rule)
            for rule in ("low_confidence", "top_k_margin", "random")
        ]
    if config.paths == "custom":
        if not config.blocks:
            raise ValueError("--paths custom needs --blocks, for example --blocks 8,16,32")
        return [
            PathSpec.uniform(
                b,
                G,
                steps=steps,
                remasking=config.remasking,
                temperature=config.temperature,
                seed=seed,
            )
            for b in sorted(config.blocks)
            for seed in config.seeds
        ]
    raise ValueError(f"unknown path preset {config.paths!r}: use one of {', '.join(PRESETS)}")


def schedule_of(spec: PathSpec) -> str:
    """The path's label without its seed: paths that differ only by seed share a schedule."""
    parts = spec.label.split("/")
    return "/".join(p for p in parts if not (p.startswith("s") and p[1:].isdigit()))


def parse_int_list(text: str) -> tuple[int, ...]:
    """Parse "8,16,32" or "0-4" (inclusive) or a mix such as "0-2,7"."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError(f"empty range {part!r}")
                values.extend(range(low, high + 1))
            elif part:
                values.append(int(part))
        except ValueError:
            raise ValueError(
                f"invalid integer list {text!r}: write comma-separated values or ranges, "
                f"for example 8,16,32 or 0-4"
            ) from None
    if not values:
        raise ValueError(f"empty integer list {text!r}")
    return tuple(values)
