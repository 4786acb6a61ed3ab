"""Time the batched decoder against the one-row reference decoder, and compare step memory.

Speed: 25 paths (uniform block sizes 2, 4, 8, 16, 32 over the toy window G = 32, 16 steps, seeds
0-4 at T = 0.9) on 32 toy questions, 800 rows, decoded by both decoders with the shipped toy model
on the CPU. The forward share is the engine's wall time inside the model call. CPU seconds
(all threads) are printed beside wall seconds: a wall time far above CPU time / threads means the
process waited for cores that other work held, and the ratios of that run are not reliable.

Memory: one row (block size 8, T = 0.9) with a randomly initialised 2-layer BERT of width 64 and
LLaDA's 126,464-token vocabulary. The number is the peak of the bytes allocated by PyTorch while
the row decodes, from the profiler's memory events (weights allocated before are not counted).
The decoder state kept between steps is a few kilobytes, so this is the peak of one step.

The last printed line reads `decode: speedup N.Nx, forward share N%, step memory ratio N.Nx`.
Usage: python benchmarks/decode.py [--questions 32] [--batch-size 200] [--reference-rows 800]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

# The script runs from a plain checkout, where hexlab need not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hexlab.decode import DecodeConfig, PathSpec, decode, reference_decode  # noqa: E402
from hexlab.models import PROFILES, DiffusionLM, load_model  # noqa: E402
from hexlab.toy.problems import make_problems  # noqa: E402
from hexlab.toy.train import TrainConfig, build_model  # noqa: E402

GEN_LENGTH = 32
STEPS = 16
BLOCK_SIZES = (2, 4, 8, 16, 32)
SEEDS = range(5)
TEMPERATURE = 0.9
LLADA_VOCAB_SIZE = 126_464
MIB = 2**20


def hex_paths(gen_length: int, steps: int, block_sizes) -> list[PathSpec]:
    """Build the 25 scaling paths: every block size with every seed, sampled at T = 0.9."""
    return [
        PathSpec.uniform(b, gen_length, steps=steps, temperature=TEMPERATURE, seed=s)
        for b in block_sizes
        for s in SEEDS
    ]


def time_engine(lm, rows, gen_length: int, batch_size: int):
    """Decode all rows with the batched engine; returns (wall s, CPU s, Trajectories)."""
    wall, cpu = time.perf_counter(), time.process_time()
    trajectories = decode(lm, rows, gen_length, DecodeConfig(batch_size=batch_size))
    return time.perf_counter() - wall, time.process_time() - cpu, trajectories


def time_reference(lm, rows) -> tuple[float, float, int]:
    """Decode rows one by one with the reference; returns (wall s, CPU s, forward passes)."""
    wall, cpu = time.perf_counter(), time.process_time()
    forward_passes = sum(reference_decode(lm, prompt, spec).nfe for prompt, spec in rows)
    return time.perf_counter() - wall, time.process_time() - cpu, forward_passes


def peak_allocated_bytes(run) -> int:
    """Peak bytes allocated by PyTorch while `run()` executes, from profiler memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    with tempfile.TemporaryDirectory() as folder:
        trace_file = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace_file))
        events = json.loads(trace_file.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    first = next(e["args"] for e in events if e.get("name") == "[memory]")
    baseline = first["Total Allocated"] - first["Bytes"]  # allocated before the first event
    return max(totals) - baseline


def llada_vocabulary_lm(toy_lm) -> DiffusionLM:
    """Build a random 2-layer, width-64 BERT with LLaDA's vocabulary size and the toy tokenizer."""
    torch.manual_seed(0)
    tokenizer = toy_lm.tokenizer
    special_ids = dict(
        pad_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    config = TrainConfig(hidden_size=64, num_layers=2, num_heads=2, max_length=128)
    model = build_model(config, LLADA_VOCAB_SIZE, special_ids)
    return DiffusionLM(model, tokenizer, PROFILES["toy"])


def step_memory(toy_lm, prompt: list[int]) -> tuple[int, int]:
    """Peak bytes of one row's decode: (engine, reference)."""
    lm = llada_vocabulary_lm(toy_lm)
    spec = PathSpec.uniform(8, GEN_LENGTH, steps=STEPS, temperature=TEMPERATURE, seed=0)
    engine = peak_allocated_bytes(lambda: decode(lm, [(prompt, spec)], GEN_LENGTH))
    reference = peak_allocated_bytes(lambda: reference_decode(lm, prompt, spec))
    return engine, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=32, help="toy questions")
    parser.add_argument("--batch-size", type=int, default=200, help="engine rows per forward")
    parser.add_argument(
        "--reference-rows",
        type=int,
        default=None,
        help="rows timed with the reference (default all); its time is scaled",
    )
    parser.add_argument("--seed", type=int, default=1234, help="seed of the toy questions")
    args = parser.parse_args()

    lm = load_model("toy", device="cpu")
    prompts = [
        lm.encode_prompt(p.question, prefill="<reasoning>")
        for p in make_problems(args.questions, args.seed)
    ]
    paths = hex_paths(GEN_LENGTH, STEPS, BLOCK_SIZES)
    rows = [(prompt, path) for prompt in prompts for path in paths]
    reference_rows = rows[: args.reference_rows or len(rows)]
    print(
        f"toy model, {len(rows)} rows ({len(prompts)} questions x {len(paths)} paths), "
        f"G={GEN_LENGTH}, {STEPS} steps, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    # warm up both code paths, then time them
    decode(lm, rows[:8], GEN_LENGTH)
    reference_decode(lm, *rows[0])
    engine_seconds, engine_cpu, trajectories = time_engine(lm, rows, GEN_LENGTH, args.batch_size)
    stats = trajectories.stats
    reference_seconds, reference_cpu, reference_passes = time_reference(lm, reference_rows)
    per_row_reference = reference_seconds / len(reference_rows)
    speedup = per_row_reference * len(rows) / engine_seconds
    forward_share = stats.forward_seconds / engine_seconds
    print(
        f"engine:    {engine_seconds:.1f} s, batch {args.batch_size}, {stats.forward_calls} "
        f"batched forward passes ({stats.forward_calls / engine_seconds:.1f}/s), "
        f"{stats.row_steps} row steps ({stats.row_steps / engine_seconds:.0f}/s), "
        f"{forward_share:.0%} of the time in the model forward, {engine_cpu:.1f} CPU s"
    )
    print(
        f"reference: {reference_seconds:.1f} s for {len(reference_rows)} rows, "
        f"{reference_passes} forward passes ({reference_passes / reference_seconds:.0f}/s), "
        f"{per_row_reference * 1e3:.1f} ms per row, {reference_cpu:.1f} CPU s"
    )

    cpu_per_row_engine = engine_cpu / len(rows)
    cpu_per_row_reference = reference_cpu / len(reference_rows)
    cpu_ratio = cpu_per_row_reference / cpu_per_row_engine
    print(
        f"CPU time per row: engine {cpu_per_row_engine * 1e3:.1f} ms, reference "
        f"{cpu_per_row_reference * 1e3:.1f} ms ({cpu_ratio:.1f}x)"
    )

    engine_bytes, reference_bytes = step_memory(lm, prompts[0])
    memory_ratio = reference_bytes / engine_bytes
    print(
        f"step memory, one row, vocabulary {LLADA_VOCAB_SIZE:,}: engine "
        f"{engine_bytes / MIB:.1f} MiB, reference {reference_bytes / MIB:.1f} MiB "
        f"(peak bytes allocated, torch profiler)"
    )
    print(
        f"decode: speedup {speedup:.1f}x, forward share {forward_share:.0%}, "
        f"step memory ratio {memory_ratio:.1f}x"
    )


if __name__ == "__main__":
    main()
