"""`hexlab run`, `hexlab demo` and `hexlab merge`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hexlab.decode import REMASKING_RULES
from hexlab.runs.config import PRESETS, RunConfig, parse_int_list

DEMO_QUESTIONS = 200


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="decode a dataset with HEX paths and write a run directory",
        description="Decode every question of a dataset with a set of paths, grade and vote. "
        "Rerunning the same command resumes; torchrun shards the work across processes.",
    )
    add_run_arguments(run)
    run.set_defaults(func=run_command)

    demo = subparsers.add_parser(
        "demo", help=f"HEX on the toy model: 25 paths on {DEMO_QUESTIONS} toy problems (CPU)"
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="run directory (default runs/demo; rerunning resumes it)",
    )
    demo.add_argument(
        "--limit",
        type=int,
        default=DEMO_QUESTIONS,
        help=f"number of toy problems (default {DEMO_QUESTIONS})",
    )
    demo.add_argument("--batch-size", type=int, default=128, help="rows per forward pass")
    demo.set_defaults(func=demo_command)

    merge = subparsers.add_parser(
        "merge", help="merge the chunk files of a finished or sharded run into its tables"
    )
    merge.add_argument("run_dir", type=Path, help="run directory written by `hexlab run`")
    merge.set_defaults(func=merge_command)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="toy", help="model profile, hub id or local folder (default toy)"
    )
    parser.add_argument(
        "--dataset",
        default="toy",
        help="gsm8k, math500, arc_challenge, truthfulqa, toy, or a .jsonl/.parquet "
        "file (default toy)",
    )
    parser.add_argument(
        "--paths",
        choices=PRESETS,
        help="path preset (default hex25); --blocks selects custom paths",
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/MODEL-DATASET-PATHS)")
    parser.add_argument("--limit", type=int, help="decode only the first N questions")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=RunConfig.batch_size,
        help=f"rows per forward pass (default {RunConfig.batch_size}); results do not depend on it",
    )
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present)")
    parser.add_argument(
        "--dtype", help="float32, bfloat16 or float16 (default: bf16 on CUDA, float32 on CPU)"
    )
    parser.add_argument(
        "--gen-length",
        type=int,
        help="answer window in tokens (default: 256 for real models, 32 for toy)",
    )
    parser.add_argument(
        "--steps", type=int, help="forward passes per path (default: half the answer window)"
    )
    parser.add_argument(
        "--blocks",
        type=int_list,
        help="custom block sizes, for example 8,16,32 (implies --paths custom); a size that does "
        "not divide the answer window leaves a shorter last block",
    )
    parser.add_argument(
        "--seeds",
        type=int_list,
        default=(0,),
        help="custom path seeds, for example 0-4 (default 0)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="custom path sampling temperature (default 0: argmax)",
    )
    parser.add_argument(
        "--remasking",
        default="low_confidence",
        choices=REMASKING_RULES,
        help="custom path remasking rule (default low_confidence)",
    )
    parser.add_argument(
        "--tie-rule",
        default="first",
        choices=("first", "nll", "random"),
        help="how the vote breaks ties (default first: HEX's rule)",
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="alternatives logged per revealed position (default 5)"
    )
    parser.add_argument(
        "--template",
        help="user prompt template with a {question} field "
        "(default: the HEX template of the dataset's task)",
    )
    parser.add_argument(
        "--chunk-questions",
        type=int,
        help="questions per chunk file, the unit a killed run resumes from "
        "(default: about two batches of rows)",
    )


def int_list(text: str) -> tuple[int, ...]:
    """Parse an option's integer list, reporting a bad value as an argparse error."""
    try:
        return parse_int_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Raise ValueError naming the first option that is given but not a positive integer."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"invalid {flag} {value}: give a positive integer")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Build the run configuration; --blocks switches to custom paths."""
    custom_options = (
        args.seeds != (0,) or args.temperature != 0.0 or args.remasking != "low_confidence"
    )
    if args.blocks is None and custom_options:
        raise ValueError(
            "--seeds, --temperature and --remasking describe custom paths and need --blocks, "
            "for example --blocks 8,16,32 --seeds 0-4 --temperature 0.9"
        )
    if args.blocks is not None and args.paths not in (None, "custom"):
        raise ValueError(
            f"--blocks sets custom paths but --paths is {args.paths}; drop one of the two"
        )
    check_positive(args, "limit", "batch_size", "gen_length", "steps", "top_k", "chunk_questions")
    paths = "custom" if args.blocks is not None else args.paths or "hex25"
    return RunConfig(
        model=args.model,
        dataset=args.dataset,
        paths=paths,
        out=args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        gen_length=args.gen_length,
        steps=args.steps,
        blocks=args.blocks,
        seeds=tuple(args.seeds),
        temperature=args.temperature,
        remasking=args.remasking,
        tie_rule=args.tie_rule,
        top_k=args.top_k,
        template=args.template,
        chunk_questions=args.chunk_questions,
    )


def run_command(args: argparse.Namespace) -> int:
    from hexlab.runs.job import run, summary_table

    result = run(config_from_args(args))
    if result.is_main:
        print(summary_table(result.metrics))
        print(f"run directory: {result.run_dir}")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from hexlab.runs.job import demo

    demo(args.out, limit=args.limit, batch_size=args.batch_size)
    return 0


def merge_command(args: argparse.Namespace) -> int:
    from hexlab.runs.job import merge, summary_table

    metrics = merge(args.run_dir)
    print(summary_table(metrics))
    return 0
