"""Benchmark expert probing: 2^12 contexts on the toy model, contexts per second and peak memory.

    python benchmarks/probe.py [--model toy] [--candidates 12] [--batch-size 256] [--threads N]

Peak memory is the growth of the process's peak resident set size (VmHWM in /proc/self/status)
over the resident size once the model is loaded. The peak counter is reset just before probing by
writing 5 to /proc/self/clear_refs (Linux 4.0 and later), so model loading does not hide the
probe's own peak. The figure includes torch's CPU tensors, which tracemalloc does not see;
tracemalloc's peak of Python allocations is printed on the line before. Where clear_refs cannot
be written, the growth of ru_maxrss is used instead, which reads 0 when loading peaked higher.

The last line reads `probe: N contexts in N.N s, peak N MB`. The model loads before the clock
starts; the time covers enumeration, forward passes and building the tables.
"""

from __future__ import annotations

import argparse
import re
import resource
import time
import tracemalloc
from pathlib import Path

import torch

from hexlab.models import load_model
from hexlab.probe import ProbeConfig, ProbeSpec, probe_experts
from hexlab.toy import make_problems
from hexlab.toy.tokenizer import EOT

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def status_kib(field: str) -> int | None:
    """Read a memory field such as VmRSS or VmHWM from /proc/self/status, in KiB."""
    if not STATUS.is_file():
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set size to the current size; False if not allowed."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="toy", help="toy, or a folder holding a toy model")
    parser.add_argument("--candidates", type=int, default=12, help="visible candidates k")
    parser.add_argument("--batch-size", type=int, default=256, help="contexts per forward pass")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model(args.model, device="cpu")
    problem = make_problems(1, seed=0)[0]
    spec = ProbeSpec(
        prompt=problem.question,
        answer=problem.target + EOT,
        targets=[args.candidates],
        visible=list(range(args.candidates)),
        prefill="<reasoning>",
        gen_length=32,
    )
    config = ProbeConfig(top_k=10, batch_size=args.batch_size)

    # warm up kernels and allocator outside the timed run
    probe_experts(lm, ProbeSpec(**{**spec.__dict__, "visible": [0]}), config)

    baseline_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    baseline_rss = status_kib("VmRSS")
    exact_peak = reset_peak_rss() and baseline_rss is not None
    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = probe_experts(lm, spec, config)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if exact_peak:
        peak_kib = status_kib("VmHWM") - baseline_rss
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_maxrss

    contexts = len(result.contexts)
    print(
        f"threads {torch.get_num_threads()}, batch size {args.batch_size}, "
        f"canvas {result.probe.prompt_length + 32} tokens"
    )
    # on a busy machine the wall time grows; CPU time over the threads estimates it when idle
    print(f"CPU time {cpu_seconds:.1f} s over {torch.get_num_threads()} threads")
    print(
        f"{contexts / seconds:.0f} contexts/s; tracemalloc peak {python_peak / 2**20:.1f} MB; "
        f"peak measured by {'VmHWM after clear_refs' if exact_peak else 'ru_maxrss delta'}"
    )
    print(f"probe: {contexts} contexts in {seconds:.1f} s, peak {peak_kib / 1024:.0f} MB")


if __name__ == "__main__":
    main()
