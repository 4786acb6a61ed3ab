"""Time the batched decoder against the reference decoder at LLaDA-8B's shape on one GPU.

Model: a randomly initialised `LlamaForCausalLM` with LLaDA-8B's shape (32 layers, width 4,096,
32 heads, MLP width 12,288, vocabulary 126,464) in bf16, made bidirectional. LLaDA's modeling code
does not ship with transformers; Llama's blocks (RMSNorm, SwiGLU MLP, rotary attention) are the
same kind, so a forward pass costs about the same. `config.is_causal = False` makes transformers
build a padding-only mask. Every attention module's `is_causal` flag is cleared as well, so SDPA
cannot fall back to its causal kernel where transformers skips building a mask. The script checks
the result: changing the last token must change the logits at the first position. Prompts are
random token ids, because text would add nothing to a random model.

Work: 25 paths (block sizes 8, 16, 32, 64, 128 x seeds 0-4 at T = 0.9, 128 steps) x 8 questions
with 200-token prompts and a 256-token answer window, 200 rows. The engine decodes batches until
--time-budget seconds have passed, and the reference decodes --reference-rows rows. Speed is
compared per row, so the speedup is an estimate from the rows each decoder finished. Step memory
is the peak allocated while one row decodes, minus what was allocated before.

--dry-run runs the same code on the CPU with a 2-layer, width-64 model, vocabulary 4,096, one
question and a 32-token window, in float32.
The last printed line reads `gpu: speedup N.Nx, forward share N%, step memory ratio N.Nx`.
Usage: python benchmarks/gpu.py [--dry-run] [--time-budget 200] [--batch-size 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
from pathlib import Path

import torch

# The script runs from a plain checkout, where hexlab need not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.decode import hex_paths, peak_allocated_bytes  # noqa: E402
from hexlab.decode import PathSpec, decode_batches, reference_decode  # noqa: E402
from hexlab.decode.engine import DecodeConfig  # noqa: E402
from hexlab.models import PROFILES, DiffusionLM  # noqa: E402

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Shape:
    """Model and workload size."""

    layers: int
    width: int
    heads: int
    mlp_width: int
    vocab_size: int
    gen_length: int
    steps: int
    block_sizes: tuple[int, ...]
    questions: int
    prompt_length: int


LLADA_8B = Shape(32, 4096, 32, 12_288, 126_464, 256, 128, (8, 16, 32, 64, 128), 8, 200)
DRY_RUN = Shape(2, 64, 4, 128, 4096, 32, 16, (2, 4, 8, 16, 32), 1, 16)


def build_lm(shape: Shape, device: torch.device, dtype: torch.dtype) -> DiffusionLM:
    """Build a random bidirectional Llama of `shape` and wrap it as a `DiffusionLM`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.width,
        intermediate_size=shape.mlp_width,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=4096,
        rope_theta=500_000.0,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    config.is_causal = False  # transformers then builds a padding-only (bidirectional) mask
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)  # initialised in `dtype`
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    # Special ids at the same distance from the end of the vocabulary as LLaDA's.
    llada = PROFILES["llada-8b-instruct"]
    offset = shape.vocab_size - 126_464
    ids = dict(
        mask_token_id=llada.mask_token_id + offset,
        eos_token_id=llada.eos_token_id + offset,
        eot_token_id=llada.eot_token_id + offset,
    )
    profile = dataclasses.replace(llada, name="random-llada-shape", source="random", **ids)
    tokenizer = types.SimpleNamespace(
        mask_token_id=ids["mask_token_id"],
        eos_token_id=ids["eos_token_id"],
        unk_token_id=None,
        convert_tokens_to_ids=lambda token: None,
    )
    return DiffusionLM(model, tokenizer, profile)


def check_bidirectional(lm: DiffusionLM, device: torch.device) -> None:
    """Raise unless a change at the last position changes the logits at the first."""
    ids = torch.randint(0, 1000, (1, 16), device=device)
    changed = ids.clone()
    changed[0, -1] += 1
    first = lm.logits(ids)[0, 0].float()
    if torch.equal(first, lm.logits(changed)[0, 0].float()):
        raise RuntimeError("the model is causal: position 0 ignores the last token")


def random_prompts(shape: Shape, lm: DiffusionLM) -> list[list[int]]:
    """Seeded random prompts of ordinary tokens (ids below every special id)."""
    generator = torch.Generator().manual_seed(0)
    low = min(lm.mask_token_id, lm.eos_token_id, lm.eot_token_id)
    return [
        torch.randint(0, low, (shape.prompt_length,), generator=generator).tolist()
        for _ in range(shape.questions)
    ]


def peak_step_bytes(run, device: torch.device) -> int:
    """Peak bytes allocated by `run()` above what was allocated before it."""
    if device.type != "cuda":
        return peak_allocated_bytes(run)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def time_engine(lm, rows, shape: Shape, batch_size: int, budget_seconds: float):
    """Decode batches until the budget is spent; returns (seconds, rows done, DecodeStats)."""
    started = time.perf_counter()
    done, stats = 0, None
    for part in decode_batches(lm, rows, shape.gen_length, DecodeConfig(batch_size=batch_size)):
        done += len(part)
        stats = part.stats if stats is None else stats + part.stats
        if time.perf_counter() - started > budget_seconds:
            break
    return time.perf_counter() - started, done, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny model on the CPU")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=200.0,
        help="seconds of engine decoding before it stops after the current batch",
    )
    parser.add_argument("--batch-size", type=int, default=40, help="engine rows per forward")
    parser.add_argument("--reference-rows", type=int, default=2, help="rows for the reference")
    args = parser.parse_args()

    shape = DRY_RUN if args.dry_run else LLADA_8B
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU found: run with --dry-run on a CPU machine")
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    started = time.perf_counter()
    lm = build_lm(shape, device, dtype)
    check_bidirectional(lm, device)
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    print(
        f"model: {shape}, {dtype}, {weights / GIB:.1f} GiB of weights on {device}, built in "
        f"{time.perf_counter() - started:.0f} s"
    )

    prompts = random_prompts(shape, lm)
    paths = hex_paths(shape.gen_length, shape.steps, shape.block_sizes)
    rows = [(prompt, path) for prompt in prompts for path in paths]

    # warm up, then time both decoders on rows of the same mix of paths
    list(decode_batches(lm, rows[:2], shape.gen_length))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    engine_seconds, engine_rows, stats = time_engine(
        lm, rows, shape, args.batch_size, args.time_budget
    )
    reference_rows = rows[: args.reference_rows]
    reference_started = time.perf_counter()
    reference_passes = sum(reference_decode(lm, *row).nfe for row in reference_rows)
    reference_seconds = time.perf_counter() - reference_started
    per_row_engine = engine_seconds / engine_rows
    per_row_reference = reference_seconds / len(reference_rows)
    forward_share = stats.forward_seconds / engine_seconds
    print(
        f"engine:    {engine_rows} of {len(rows)} rows in {engine_seconds:.1f} s, batch "
        f"{args.batch_size}, {stats.forward_calls / engine_seconds:.2f} batched forward "
        f"passes/s, {stats.row_steps / engine_seconds:.1f} row steps/s, "
        f"{forward_share:.0%} in the model forward"
    )
    print(
        f"reference: {len(reference_rows)} rows in {reference_seconds:.1f} s, "
        f"{reference_passes / reference_seconds:.1f} forward passes/s"
    )
    if device.type == "cuda":
        print(
            f"GPU memory: peak {torch.cuda.max_memory_allocated(device) / GIB:.1f} GiB "
            f"allocated while timing, of which {weights / GIB:.1f} GiB weights"
        )

    spec = PathSpec.uniform(
        shape.block_sizes[2], shape.gen_length, steps=shape.steps, temperature=0.9
    )
    engine_bytes = peak_step_bytes(
        lambda: list(decode_batches(lm, [(prompts[0], spec)], shape.gen_length)), device
    )
    reference_bytes = peak_step_bytes(lambda: reference_decode(lm, prompts[0], spec), device)
    print(
        f"step memory, one row ({spec.label}): engine {engine_bytes / GIB:.3f} GiB, "
        f"reference {reference_bytes / GIB:.3f} GiB; total run time "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        f"gpu: speedup {per_row_reference / per_row_engine:.1f}x, forward share "
        f"{forward_share:.0%}, step memory ratio {reference_bytes / engine_bytes:.1f}x"
    )


if __name__ == "__main__":
    main()
