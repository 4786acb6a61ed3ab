"""`hexlab probe`: the distribution at answer positions for every visible set of other positions.

Example on the toy model, reading answer position 3 for each subset of positions 0, 1 and 2:

    hexlab probe --model toy --prompt "Mia has 34 apples. She buys 27 more. How many apples
    does Mia have?" --prefill "<reasoning>" --answer "34+27=61</reasoning>" --targets 3
    --visible 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

TABLE_SUFFIXES = (".parquet", ".csv")
EXPERT_COLUMNS = [
    "context",
    "shown",
    "target",
    "reference_token",
    "reference_probability",
    "reference_rank",
    "argmax_token",
    "argmax_probability",
    "entropy",
]


def parse_positions(text: str) -> list[int]:
    """Parse answer positions such as "3", "0,1,2" or "0-11,14" (ranges include both ends)."""
    positions = []
    for piece in text.split(","):
        piece = piece.strip()
        first, dash, last = piece.partition("-")
        try:
            positions += list(range(int(first), int(last) + 1)) if dash else [int(piece)]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid positions {text!r}: use integers such as 3, 0,1,2 or 0-11"
            ) from None
    return positions


def register(subparsers) -> None:
    probe = subparsers.add_parser(
        "probe",
        help="read a model's distribution at target answer positions for every visible set",
        description="Show each subset of the --visible positions of a reference answer, mask the "
        "rest of the answer window, and read the distribution at the --targets positions. "
        "Prints one row per expert (visible set), then expert agreement and mixtures.",
    )
    _add_request_options(probe)
    _add_probe_options(probe)
    _add_output_options(probe)
    probe.set_defaults(func=run_probe)


def _add_request_options(probe: argparse.ArgumentParser) -> None:
    probe.add_argument("--model", default="toy", help="profile name, hub id or folder (toy)")
    probe.add_argument(
        "--prompt", required=True, help="user message, sent through the chat template"
    )
    probe.add_argument(
        "--prefill",
        default="",
        help="text appended after the chat template, "
        "such as <reasoning> for the toy model (default: none)",
    )
    probe.add_argument(
        "--answer", required=True, help="reference answer text; positions count its tokens from 0"
    )
    probe.add_argument(
        "--targets",
        metavar="LIST",
        required=True,
        type=parse_positions,
        help="answer positions to read, such as 3 or 3,4",
    )
    probe.add_argument(
        "--visible",
        metavar="LIST",
        required=True,
        type=parse_positions,
        help="candidate answer positions to show, such as 0,1,2 or 0-11",
    )
    probe.add_argument(
        "--gen-length",
        metavar="N",
        type=int,
        help="answer window in tokens; the answer is "
        "padded with end-of-text up to it (default: the model profile's window, "
        "32 for toy; 0 uses the answer's own length)",
    )


def _add_probe_options(probe: argparse.ArgumentParser) -> None:
    probe.add_argument(
        "--top-k",
        type=int,
        default=10,
        help="most probable tokens kept per expert and target, plus the reference (default 10)",
    )
    probe.add_argument(
        "--full",
        action="store_true",
        help="keep every token's probability; --out then writes all of them",
    )
    probe.add_argument(
        "--sample",
        metavar="N",
        type=int,
        help="probe this many random visible sets instead "
        "of all 2^k (required above 16 candidates)",
    )
    probe.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of --sample, of the sampled pairs behind the mean JS divergence and of the "
        "--block-sizes decoding (default 0)",
    )
    probe.add_argument(
        "--batch-size", type=int, default=32, help="contexts per forward pass (default 32)"
    )
    probe.add_argument(
        "--block-sizes",
        metavar="LIST",
        type=parse_positions,
        help="also decode once per block size, such as 2,4,8,16,32, print each target's "
        "distribution when revealed and add the semi-AR gate to the mixtures",
    )


def _add_output_options(probe: argparse.ArgumentParser) -> None:
    probe.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help="write the token table to FILE.parquet or "
        "FILE.csv, the expert summary to FILE.experts.<same suffix> and the "
        "settings to FILE.json",
    )
    probe.add_argument(
        "--figure",
        metavar="FILE",
        type=Path,
        help="save the per-expert distributions at the "
        "first target to this image (PNG, PDF or SVG)",
    )
    probe.add_argument(
        "--heatmap",
        metavar="FILE",
        type=Path,
        help="save the heatmap of the reference token's "
        "probability over visible sets to this image",
    )
    probe.add_argument(
        "--sweep-figure",
        metavar="FILE",
        type=Path,
        help="save the block-size sweep to this image (needs --block-sizes)",
    )
    probe.add_argument(
        "--max-rows", type=int, default=64, help="expert rows to print; 0 prints all (default 64)"
    )
    probe.add_argument("--device", help="cuda, cpu or cuda:N (default: CUDA when present)")
    probe.add_argument(
        "--dtype", help="float32, bfloat16 or float16 (default: bf16 on CUDA, float32 on CPU)"
    )


def _check_output_paths(args: argparse.Namespace) -> None:
    if args.out is not None and args.out.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"--out {args.out} must end in .parquet or .csv")
    if args.sweep_figure is not None and not args.block_sizes:
        raise ValueError("--sweep-figure needs --block-sizes, such as --block-sizes 2,4,8,16,32")
    if args.max_rows < 0:
        raise ValueError(f"--max-rows must be 0 (all) or more, got {args.max_rows}")
    if args.gen_length is not None and args.gen_length < 0:
        raise ValueError(
            f"--gen-length must be 0 (the answer's length) or more, got {args.gen_length}"
        )


def run_probe(args: argparse.Namespace) -> int:

    from hexlab.models import load_model
    from hexlab.probe import (
        ProbeConfig,
        ProbeSpec,
        SweepConfig,
        block_size_sweep,
        default_gates,
        probe_experts,
        semi_ar_gate,
    )

    _check_output_paths(args)
    config = ProbeConfig(
        top_k=args.top_k,
        full=args.full,
        sample=args.sample,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    gen_length = lm.profile.gen_length if args.gen_length is None else args.gen_length or None
    spec = ProbeSpec(
        prompt=args.prompt,
        answer=args.answer,
        targets=args.targets,
        visible=args.visible,
        prefill=args.prefill,
        gen_length=gen_length,
    )
    result = probe_experts(lm, spec, config)
    gates = default_gates(result)
    sweep = None
    if args.block_sizes:
        sweep, revealed, _ = block_size_sweep(
            lm, spec, SweepConfig(block_sizes=tuple(args.block_sizes), seeds=(args.seed,))
        )
        gates["semi-AR"] = semi_ar_gate(result, revealed)
    _print_report(result, gates, sweep, args.max_rows)

    if args.out is not None:
        _write_outputs(result, spec, args.out)
    _save_figures(result, sweep, args)
    return 0


def _print_report(result, gates, sweep, max_rows: int) -> None:
    """Print the expert table, agreement, the mixtures and, with a sweep, the revealed slots."""
    import pandas as pd

    from hexlab.probe import agreement, mixture_summary

    experts = result.experts[EXPERT_COLUMNS]
    shown = experts if max_rows == 0 else experts.head(max_rows)
    options = ("display.width", 160, "display.max_columns", None)
    with pd.option_context(*options, "display.float_format", "{:.4f}".format):
        print(
            f"experts ({len(result.contexts)} visible sets of positions "
            f"{list(result.probe.candidates)}):"
        )
        print(shown.to_string(index=False))
        if len(shown) < len(experts):
            print(f"... {len(experts) - len(shown)} more rows; --max-rows 0 prints all")
        print("\nagreement (JS divergence in bits):")
        print(agreement(result).to_string(index=False))
        print("\nmixtures:")
        print(mixture_summary(result, gates).to_string(index=False))
        if sweep is not None:
            print("\ndistribution when revealed, by block size (top token and reference):")
            print(_sweep_table(sweep).to_string(index=False))


def _sweep_table(sweep):
    """Summarize the sweep per block size and target: reveal step, top token, reference share."""
    keys = ["block_size", "target"]
    top = sweep[sweep["rank"] == 1].set_index(keys)
    reference = sweep[sweep["is_reference"]].set_index(keys)
    table = top[["reveal_step", "token", "probability"]].rename(
        columns={"token": "argmax_token", "probability": "argmax_probability"}
    )
    table["reference_probability"] = reference["probability"]
    return table.reset_index()


def _write_table(frame, path: Path) -> None:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    print(f"wrote {len(frame)} rows to {path}")


def _write_outputs(result, spec, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tokens = result.distribution_frame() if result.config.full else result.tokens
    _write_table(tokens, out)
    _write_table(result.experts, out.with_suffix(".experts" + out.suffix))
    settings = {
        "spec": dataclasses.asdict(spec),
        "config": dataclasses.asdict(result.config),
        "prompt_ids": list(result.probe.prompt_ids),
        "answer_ids": list(result.probe.answer_ids),
    }
    out.with_suffix(".json").write_text(json.dumps(settings, indent=2) + "\n")


def _save_figures(result, sweep, args: argparse.Namespace) -> None:
    from hexlab.probe import (
        plot_block_size_sweep,
        plot_expert_distributions,
        plot_reference_heatmap,
    )

    figures = (
        (args.figure, plot_expert_distributions, result.tokens),
        (args.heatmap, plot_reference_heatmap, result.experts),
        (args.sweep_figure, plot_block_size_sweep, sweep),
    )
    for path, plot, frame in figures:
        if path is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        plot(frame).savefig(path, bbox_inches="tight")
        print(f"saved {path}")
