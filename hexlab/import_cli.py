"""`hexlab import`: turn generation files decoded elsewhere into a graded, voted run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from hexlab.runs.importer import DEFAULT_MAX_UNMATCHED, check_max_unmatched


def parse_max_unmatched(text: str) -> float:
    """Parse a count ("5") or a fraction below 1 ("0.02") of questions allowed to go unmatched."""
    try:
        value = float(text)
        check_max_unmatched(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --max-unmatched {text!r}: use a fraction in [0, 1), such as 0.02, or a "
            f"whole count, such as 5"
        ) from None
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="grade and vote generations decoded elsewhere (d1 layout or JSON lines)",
        description="Read generation files (d1 layout, one file or rank shard per setting, or "
        "JSON lines with question, path and text fields; plain or gzip), join their questions to "
        "the dataset by text, grade every path, vote, and write a run directory that `hexlab "
        "scale`, `figures` and `tables` read.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="[NAME=]PATH",
        help="generation file or folder (searched recursively); NAME sets the source that "
        "prefixes the schedule labels (default: the name of the file's folder)",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help="dataset the questions come from: a built-in name such as gsm8k, or a file",
    )
    parser.add_argument(
        "--task",
        help="answer kind of a dataset file: gsm8k, math, mc or toy (built-in datasets set it)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument(
        "--max-unmatched",
        type=parse_max_unmatched,
        default=DEFAULT_MAX_UNMATCHED,
        help="questions allowed to match no dataset question, which are then dropped: a count, "
        f"or a fraction of the distinct questions read when below 1 (default: "
        f"{DEFAULT_MAX_UNMATCHED})",
    )
    parser.add_argument(
        "--model", help="model name, needed when the files name none (d1 files store model_path)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier import in --out"
    )
    parser.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from hexlab.runs.importer import ImportConfig, import_run, write_run

    config = ImportConfig(
        inputs=tuple(args.inputs),
        dataset=args.dataset,
        max_unmatched=args.max_unmatched,
        model=args.model,
        task=args.task,
    )
    run = import_run(config)
    out = write_run(run, args.out, overwrite=args.overwrite)

    counts, metrics = run.metrics["import"], run.metrics
    print(
        f"read {sum(counts['rows_read_per_source'].values())} generations: "
        + ", ".join(f"{name} {n}" for name, n in counts["rows_read_per_source"].items())
    )
    print(
        f"joined {counts['questions_joined']} questions; questions by number of settings: "
        + ", ".join(f"{n}: {q}" for n, q in counts["questions_by_settings"].items())
    )
    if counts["unmatched_questions"]:
        print(f"dropped {counts['unmatched_questions']} questions that match no dataset question")
    print(f"replaced {counts['null_golds_replaced']} null golds with the dataset's")
    for label, accuracy in metrics["single_path_accuracy"].items():
        print(f"  {label}: accuracy {accuracy:.2%}")
    print(
        f"vote over all settings: accuracy {metrics['accuracy']:.2%}, "
        f"tie rate {metrics['tie_rate']:.2%}"
    )
    print(f"wrote {out}")
    return 0
