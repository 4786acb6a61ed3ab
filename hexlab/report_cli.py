"""The `hexlab scale`, `hexlab figures` and `hexlab tables` commands.

Each command takes one or more run directories (made by `hexlab run` or `hexlab import`) and
combines them into one table or figure, with one group or panel per dataset and model.
`--max-paths` keeps the lowest path ids of each run, and then `--complete-only` keeps the
questions that have all of the remaining paths.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

DEFAULT_DRAWS = 1000


@dataclass
class Run:
    """One loaded run directory with the labels that group it in tables and figures."""

    directory: Path
    paths: pd.DataFrame
    labels: dict[str, str]
    gen_length: int | None


def _run_label(run_dir: Path, paths: pd.DataFrame, config: dict, key: str) -> str:
    """Take a dataset or model name from the config, then the paths table, then a fallback."""
    from hexlab.paths_table import find_config_value

    value = find_config_value(config, key)
    if value is None and key in paths.columns and paths[key].nunique() == 1:
        value = paths[key].iloc[0]
    if value is None:
        value = run_dir.name if key == "dataset" else "unknown"
        logger.warning("%s has no %s in config.json; using %r", run_dir, key, value)
    return str(value)


def load_runs(
    run_dirs: list[Path], max_paths: int | None = None, complete_only: bool = False
) -> list[Run]:
    """Load and label each run directory, keeping its first `max_paths` path ids.

    With `complete_only`, each run keeps only the questions that have all of its kept paths.
    """
    from hexlab.paths_table import complete_questions, keep_first_paths, load_run
    from hexlab.tables import find_gen_length

    runs = []
    for run_dir in run_dirs:
        paths, config = load_run(run_dir)
        # Filtering here makes the main results and ablations use the same paths as the curves.
        paths = keep_first_paths(paths, max_paths)
        if complete_only:
            paths = complete_questions(paths)
        labels = {key: _run_label(run_dir, paths, config, key) for key in ("dataset", "model")}
        # The run name distinguishes runs that share a dataset and model.
        labels["run"] = str(run_dir)
        runs.append(Run(run_dir, paths, labels, find_gen_length(config)))
    return runs


def _scaling_config(args: argparse.Namespace):
    from hexlab.scaling import ScalingConfig

    if args.draws is not None and "random" not in _methods(args):
        raise ValueError("--draws sets random-subset draws, so it needs --method random or both")
    draws = DEFAULT_DRAWS if args.draws is None else args.draws
    return ScalingConfig(
        draws=draws,
        bootstrap=args.bootstrap,
        seed=args.seed,
        confidence=args.confidence,
    )


def _methods(args: argparse.Namespace) -> tuple[str, ...]:
    return ("prefix", "random") if args.method == "both" else (args.method,)


def _all_curves(runs: list[Run], args: argparse.Namespace) -> pd.DataFrame:
    from hexlab.scaling import scaling_curves

    config = _scaling_config(args)
    frames = [scaling_curves(run.paths, config, _methods(args), run.labels) for run in runs]
    return pd.concat(frames, ignore_index=True)


def _all_results(runs: list[Run], args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the main results and the collapse ablation of all runs, concatenated."""
    from hexlab.tables import collapse_ablation, main_results

    config = _scaling_config(args)
    results, ablations = [], []
    for run in runs:
        results.append(main_results(run.paths, config, run.gen_length, run.labels))
        ablations.append(collapse_ablation(run.paths, run.gen_length, config, run.labels))
    return pd.concat(results, ignore_index=True), pd.concat(ablations, ignore_index=True)


def run_scale(args: argparse.Namespace) -> int:
    from hexlab.tables import scaling_table

    curves = _all_curves(load_runs(args.run_dirs, args.max_paths, args.complete_only), args)
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(scaling_table(curves, sizes=None, method=None).to_string(index=False))
    if args.out is not None:
        suffix = args.out.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ValueError(f"--out must end in .csv or .parquet, got {args.out}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            curves.to_csv(args.out, index=False)
        else:
            curves.to_parquet(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from hexlab import figures

    _check_trajectory_options(args)
    runs = load_runs(args.run_dirs, args.max_paths, args.complete_only)
    curves = _all_curves(runs, args)
    results, ablation = _all_results(runs, args)
    methods = _methods(args)
    built = {
        "scaling": figures.plot_scaling_curves(
            curves, methods=methods, paper_reference=args.paper_reference
        ),
        "scaling_forward_passes": figures.plot_scaling_curves(
            curves, methods=methods, x="forward_passes"
        ),
        "main_results": figures.plot_main_results(results),
    }
    if ablation.empty:
        print("skipped collapse_ablation: no run has both one-block and semi-AR paths")
    else:
        built["collapse_ablation"] = figures.plot_collapse_ablation(ablation)
    if "nll_selection" in set(results["kind"]):
        built["selection_vs_voting"] = figures.plot_selection_vs_voting(results)
    else:
        print("skipped selection_vs_voting: no run has NLL values")
    trajectory = _trajectory_figure(args)
    if trajectory is not None:
        built["trajectory"] = trajectory

    for name, figure in built.items():
        for path in figures.save_figure(figure, args.out / name, tuple(args.formats)):
            print(f"wrote {path}")
    return 0


def _check_trajectory_options(args: argparse.Namespace) -> None:
    """Reject trajectory options that lack their partner before any run is loaded."""
    from_run = args.trajectory_question is not None or args.trajectory_path is not None
    if from_run and (args.trajectory_question is None or args.trajectory_path is None):
        raise ValueError("--trajectory-question and --trajectory-path must be given together")
    if from_run and args.trajectory is not None:
        raise ValueError("use either --trajectory FILE or --trajectory-question/--trajectory-path")
    if args.trajectory_steps is not None and args.trajectory is None:
        raise ValueError("--trajectory-steps needs --trajectory FILE")
    if args.eot_token_id is not None and args.eos_token_id is None:
        raise ValueError("--eot-token-id needs --eos-token-id")


def _trajectory_figure(args: argparse.Namespace):
    """Plot the trajectory from --trajectory FILE or from the first run's chunks, if requested."""
    from hexlab.trajectory_figure import plot_trajectory, run_trajectory

    if args.trajectory is not None:
        trajectory = _read_frame(args.trajectory)
        return plot_trajectory(trajectory, _trajectory_steps(args, trajectory))
    if args.trajectory_question is None:
        return None
    stop_ids = None if args.eos_token_id is None else (args.eos_token_id, args.eot_token_id)
    trajectory, steps, title = run_trajectory(
        args.run_dirs[0], args.trajectory_question, args.trajectory_path, stop_ids
    )
    return plot_trajectory(trajectory, steps, title)


def _trajectory_steps(args: argparse.Namespace, trajectory: pd.DataFrame) -> int:
    if args.trajectory_steps is not None:
        return args.trajectory_steps
    last_step = trajectory["step_revealed"].max()
    if pd.isna(last_step):
        raise ValueError(f"{args.trajectory} reveals no token; set --trajectory-steps")
    return int(last_step) + 1


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)


def run_tables(args: argparse.Namespace) -> int:
    from hexlab import tables

    runs = load_runs(args.run_dirs, args.max_paths, args.complete_only)
    results, ablation = _all_results(runs, args)
    curves = _all_curves(runs, args)
    method = None if args.method == "both" else args.method
    sizes = args.sizes
    if sizes is None:
        largest = int(curves["n"].max())
        sizes = sorted({n for n in range(5, largest + 1, 5)} | {largest})
    built = {
        "main_results": tables.main_results_table(results),
        "collapse_ablation": tables.ablation_table(ablation),
        "selection_vs_voting": tables.selection_table(results),
        "scaling": tables.scaling_table(curves, sizes=sizes, method=method),
    }
    for name, table in built.items():
        if table.empty:
            logger.info("table %s is empty and is not written", name)
            continue
        caption = name.replace("_", " ")
        if args.out is None:
            print(f"{name}:\n{tables.render_table(table, args.format, caption)}")
        else:
            print(f"wrote {tables.write_table(table, args.out / name, args.format, caption)}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text}: expected an integer >= 1")
    return value


def _add_common_options(parser: argparse.ArgumentParser, default_method: str) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directory")
    parser.add_argument(
        "--method",
        choices=["prefix", "random", "both"],
        default=default_method,
        help="prefix: first n paths in path order; random: expectation over random n-subsets "
        f"(default: {default_method})",
    )
    parser.add_argument(
        "--draws",
        type=_positive_int,
        default=None,
        help=f"random subsets per question and size (default: {DEFAULT_DRAWS}); sizes with "
        "fewer distinct subsets are enumerated exactly",
    )
    parser.add_argument(
        "--bootstrap",
        type=_positive_int,
        default=1000,
        help="bootstrap resamples of questions (default: 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="interval level (default: 0.95)"
    )
    parser.add_argument(
        "--max-paths",
        type=_positive_int,
        default=None,
        help="use only the N lowest path ids of each run (default: all)",
    )
    parser.add_argument(
        "--complete-only",
        action="store_true",
        help="keep only the questions that have every path of their run (after --max-paths); "
        "by default a question with fewer paths votes with the ones it has",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    scale = subparsers.add_parser(
        "scale", help="print accuracy, tie rate and coverage against the number of paths"
    )
    _add_common_options(scale, default_method="both")
    scale.add_argument("--out", type=Path, help="also write the curves to FILE (.csv or .parquet)")
    scale.set_defaults(func=run_scale)

    figures = subparsers.add_parser("figures", help="write PNG and PDF figures of runs")
    _add_common_options(figures, default_method="prefix")
    figures.add_argument("--out", type=Path, required=True, help="output directory")
    figures.add_argument(
        "--formats",
        nargs="+",
        choices=["png", "pdf", "svg"],
        default=["png", "pdf"],
        help="file formats to write (default: png pdf)",
    )
    figures.add_argument(
        "--paper-reference",
        action="store_true",
        help="mark the HEX paper's LLaDA-8B-Instruct accuracy and tie rate on the scaling plot",
    )
    figures.add_argument(
        "--trajectory",
        type=Path,
        help="CSV or Parquet file with columns position, step_revealed, token_class "
        "(text, eot or eos) to plot as a decoding-trajectory heatmap",
    )
    figures.add_argument(
        "--trajectory-question",
        metavar="QUESTION_ID",
        help="plot the decoding trajectory of this question from the first RUN_DIR's chunks "
        "(a run written by `hexlab run`); needs --trajectory-path",
    )
    figures.add_argument(
        "--trajectory-path",
        type=int,
        metavar="PATH_ID",
        help="path id of the trajectory to plot; needs --trajectory-question",
    )
    figures.add_argument(
        "--eos-token-id",
        type=int,
        help="end-of-text token id for the trajectory (default: load the run's model on the CPU "
        "to read it, which needs tens of GB of memory for an 8B model)",
    )
    figures.add_argument(
        "--eot-token-id",
        type=int,
        help="end-of-turn token id for the trajectory, with --eos-token-id (default: none)",
    )
    figures.add_argument(
        "--trajectory-steps",
        type=_positive_int,
        help="number of decoding steps of the trajectory (default: last step_revealed + 1)",
    )
    figures.set_defaults(func=run_figures)

    tables = subparsers.add_parser("tables", help="write main-results, ablation and scaling tables")
    _add_common_options(tables, default_method="prefix")
    tables.add_argument("--format", choices=["csv", "md", "latex"], required=True)
    tables.add_argument("--out", type=Path, help="output directory (default: print to stdout)")
    tables.add_argument(
        "--sizes",
        type=_positive_int,
        nargs="+",
        help="path counts in the scaling table (default: multiples of 5 and the largest count)",
    )
    tables.set_defaults(func=run_tables)
