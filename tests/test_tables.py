"""Tests of the summary tables, their export formats and the scale and tables commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from hexlab import report_cli
from hexlab.scaling import ScalingConfig, load_run, scaling_curves
from hexlab.tables import (
    ablation_table,
    collapse_ablation,
    find_gen_length,
    format_estimate,
    main_results,
    main_results_table,
    render_table,
    scaling_table,
    schedule_accuracy,
    schedule_block_size,
    selection_table,
    to_markdown,
    write_table,
)

# Three questions x four schedules; "-" is no parsable answer. Correct keys: A, D, F.
#   schedule:  b4  b8  b16  b32      collapsed: b32 paths of q1 and q2
#   q1:        A   B   A    B
#   q2:        -   C   D    D
#   q3:        E   E   F    F
SCHEDULES = ["b4", "b8", "b16", "b32"]
KEYS = {"q1": ["A", "B", "A", "B"], "q2": [None, "C", "D", "D"], "q3": ["E", "E", "F", "F"]}
GOLD = {"q1": "A", "q2": "D", "q3": "F"}
NLL = {"q1": [0.5, 0.1, 0.6, 0.7], "q2": [0.2, 0.9, 0.4, 0.3], "q3": [0.9, 0.8, 0.5, 0.7]}
CONFIG = {"dataset": {"name": "gsm8k"}, "model": "toy-mdm", "decoding": {"gen_length": 32}}
SMALL = ScalingConfig(draws=20, bootstrap=100, seed=0)


def make_paths() -> pd.DataFrame:
    rows = []
    for question, answers in KEYS.items():
        for path_id, key in enumerate(answers):
            rows.append(
                {
                    "question_id": question,
                    "path_id": path_id,
                    "answer_key": key,
                    "answer": key,
                    "correct": key == GOLD[question],
                    "nfe": 32 // int(SCHEDULES[path_id][1:]) * 4,
                    "nll": NLL[question][path_id],
                    "collapsed": path_id == 3 and question != "q3",
                    "schedule": SCHEDULES[path_id],
                }
            )
    return pd.DataFrame(rows)


def write_run(directory: Path, config: dict = CONFIG, paths: pd.DataFrame | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (make_paths() if paths is None else paths).to_parquet(directory / "paths.parquet")
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def test_schedule_block_size_sources():
    assert schedule_block_size("b8,s3") == 8
    assert schedule_block_size("x", block_sizes=[16, 16]) == 16
    assert schedule_block_size("b8", block_sizes="[8, 16]") is None
    assert schedule_block_size("greedy") is None


def test_find_gen_length_nested():
    assert find_gen_length(CONFIG) == 32
    assert find_gen_length({"model": "x"}) is None


def test_schedule_accuracy_per_schedule():
    table = schedule_accuracy(make_paths(), SMALL, gen_length=32)
    assert table["method"].tolist() == SCHEDULES
    # Correct paths per schedule: b4 q1; b8 none; b16 q1,q2,q3; b32 q2,q3.
    assert table["accuracy"].tolist() == pytest.approx([1 / 3, 0, 1, 2 / 3])
    assert table["kind"].tolist() == ["schedule", "schedule", "schedule", "one_block"]
    assert table["collapse_rate"].tolist() == pytest.approx([0, 0, 0, 2 / 3])
    assert table["forward_passes"].tolist() == pytest.approx([32, 16, 8, 4])


def test_main_results_rows():
    results = main_results(make_paths(), SMALL, gen_length=32, labels={"dataset": "gsm8k"})
    by_kind = results.set_index("method")
    # Vote: q1 A (A-B tie), q2 D, q3 E (E-F tie) -> 2/3 correct, 2/3 tied.
    assert by_kind.loc["HEX vote", "accuracy"] == pytest.approx(2 / 3)
    assert by_kind.loc["HEX vote", "tie_rate"] == pytest.approx(2 / 3)
    # Lowest-NLL path: q1 B, q2 no answer, q3 F -> 1/3.
    assert by_kind.loc["lowest-NLL path", "accuracy"] == pytest.approx(1 / 3)
    # NLL tie-break: q1 B, q2 D, q3 F -> 2/3.
    assert by_kind.loc["HEX vote, NLL tie-break", "accuracy"] == pytest.approx(2 / 3)
    # Two collapsed paths out of twelve; the vote spends 32+16+8+4 = 60 passes per question.
    assert by_kind.loc["HEX vote", "collapse_rate"] == pytest.approx(2 / 12)
    assert by_kind.loc["HEX vote", "forward_passes"] == pytest.approx(60)
    # One-block baselines come first, then schedules in path order, then the combined rows.
    assert results["kind"].tolist() == [
        "one_block",
        "schedule",
        "schedule",
        "schedule",
        "vote",
        "nll_selection",
        "vote_nll_tiebreak",
    ]
    assert results["method"].iloc[:4].tolist() == ["b32", "b4", "b8", "b16"]
    assert (results["dataset"] == "gsm8k").all()
    assert (results["n_questions"] == 3).all()


def test_main_results_without_optional_columns():
    paths = make_paths().drop(columns=["nll", "collapsed", "schedule"])
    results = main_results(paths, SMALL)
    assert "nll_selection" not in set(results["kind"])
    assert results["collapse_rate"].isna().all()
    assert results["method"].iloc[0] == "path 0"


def test_collapse_ablation_values():
    ablation = collapse_ablation(make_paths(), 32, SMALL).set_index("decoding")
    # Semi-AR per-question accuracy: q1 2/3, q2 1/3, q3 1/3 -> 4/9. One block: q2, q3 -> 2/3.
    assert ablation.loc["semi-AR", "accuracy"] == pytest.approx(4 / 9)
    assert ablation.loc["one block", "accuracy"] == pytest.approx(2 / 3)
    assert ablation.loc["one block", "collapse_rate"] == pytest.approx(2 / 3)
    assert ablation.loc["semi-AR", "collapse_rate"] == 0
    assert ablation["n_paths"].tolist() == [3, 9]


def test_collapse_ablation_without_any_length():
    # No run length, no gen_length column and no block_sizes column: nothing counts as one block.
    assert collapse_ablation(make_paths(), None, SMALL).empty


def test_collapse_ablation_needs_both_families():
    # With a 64-token generation no schedule of make_paths is one block.
    assert collapse_ablation(make_paths(), 64, SMALL).empty


def test_collapse_ablation_reads_gen_length_column():
    # A mixed import: b4 and b8 decode 64 tokens, b16 16 tokens and b32 32 tokens, so b16 and
    # b32 are one block and the run has no single length.
    paths = make_paths()
    paths["gen_length"] = paths["path_id"].map({0: 64, 1: 64, 2: 16, 3: 32})
    ablation = collapse_ablation(paths, None, SMALL).set_index("decoding")
    # One block (b16, b32): q1 A right, B wrong -> 1/2; q2 D, D -> 1; q3 F, F -> 1. Mean 5/6.
    assert ablation.loc["one block", "accuracy"] == pytest.approx(5 / 6)
    # Semi-AR (b4, b8): q1 A, B -> 1/2; q2 none, C -> 0; q3 E, E -> 0. Mean 1/6.
    assert ablation.loc["semi-AR", "accuracy"] == pytest.approx(1 / 6)
    # Collapsed: the b32 paths of q1 and q2, 2 of the 6 one-block paths.
    assert ablation.loc["one block", "collapse_rate"] == pytest.approx(2 / 6)
    assert ablation["n_paths"].tolist() == [6, 6]


def with_block_sizes(paths: pd.DataFrame) -> pd.DataFrame:
    sizes = {0: [4] * 8, 1: [8] * 4, 2: [16, 16], 3: [32]}
    return paths.assign(block_sizes=paths["path_id"].map(sizes))


def test_collapse_ablation_sums_block_sizes():
    # Every row's blocks sum to 32 tokens, so only b32 ([32]) is one block, as with length 32.
    ablation = collapse_ablation(with_block_sizes(make_paths()), None, SMALL)
    expected = collapse_ablation(make_paths(), 32, SMALL)
    pd.testing.assert_frame_equal(ablation, expected)


def test_collapse_ablation_leaves_out_unknown_lengths():
    paths = make_paths()
    # b4 paths lack a length; the others decode 32 tokens.
    paths["gen_length"] = paths["path_id"].map({0: None, 1: 32, 2: 32, 3: 32}).astype("Int64")
    ablation = collapse_ablation(paths, None, SMALL).set_index("decoding")
    # Semi-AR keeps b8 and b16 only: q1 B, A -> 1/2; q2 C, D -> 1/2; q3 E, F -> 1/2.
    assert ablation.loc["semi-AR", "accuracy"] == pytest.approx(1 / 2)
    assert ablation.loc["semi-AR", "n_paths"] == 6


def test_schedule_kinds_use_block_sizes():
    table = schedule_accuracy(with_block_sizes(make_paths()), SMALL, gen_length=None)
    assert table["kind"].tolist() == ["schedule", "schedule", "schedule", "one_block"]


def test_main_results_ignore_all_nan_nll():
    # Imported runs store nll as NaN on every path: no likelihood rows may appear.
    results = main_results(make_paths().assign(nll=float("nan")), SMALL, gen_length=32)
    assert "nll_selection" not in set(results["kind"])
    assert "vote_nll_tiebreak" not in set(results["kind"])
    assert "lowest-NLL path" not in set(results["method"])
    assert selection_table(results).empty


def test_format_estimate_with_interval():
    assert format_estimate(0.881, 0.864, 0.898) == "88.1 [86.4, 89.8]"
    assert format_estimate(0.5) == "50.0"
    assert format_estimate(float("nan")) == "-"


def test_main_results_table_cells():
    results = main_results(make_paths(), SMALL, gen_length=32, labels={"dataset": "gsm8k"})
    table = main_results_table(results)
    vote = table[table["Method"] == "HEX vote"].iloc[0]
    assert vote["Accuracy (%)"].startswith("66.7 [")
    assert vote["Tie rate (%)"] == "66.7"
    assert vote["Questions"] == 3
    assert table.columns[0] == "Dataset"
    assert set(selection_table(results)["Method"]) == {
        "HEX vote",
        "lowest-NLL path",
        "HEX vote, NLL tie-break",
    }


def test_ablation_and_scaling_tables():
    ablation = ablation_table(collapse_ablation(make_paths(), 32, SMALL))
    assert ablation["Decoding"].tolist() == ["one block", "semi-AR"]
    curves = scaling_curves(make_paths(), SMALL, labels={"dataset": "gsm8k", "model": "m"})
    table = scaling_table(curves, sizes=(2, 4))
    assert table["Paths"].tolist() == [2, 4]
    # Prefix vote of all four paths: 2/3 correct and 2/3 tied.
    assert table["Tie rate (%)"].iloc[1].startswith("66.7 [")
    both = scaling_table(curves, sizes=None, method=None)
    assert len(both) == 8
    assert set(both["Method"]) == {"prefix", "random"}


def test_markdown_writer_layout():
    table = pd.DataFrame({"Method": ["a|b", "c"], "Accuracy (%)": ["1.0 [0.5, 1.5]", "2.0"]})
    lines = to_markdown(table).splitlines()
    assert lines[0] == "| Method | Accuracy (%) |"
    assert lines[1] == "|---|---|"
    assert lines[2] == "| a\\|b | 1.0 [0.5, 1.5] |"
    assert len(lines) == 4


def test_latex_uses_booktabs_and_escapes():
    table = pd.DataFrame({"Accuracy (%)": ["88.1 [86.4, 89.8]"], "Method": ["vote_nll"]})
    latex = render_table(table, "latex", caption="main results")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in latex
    assert "Accuracy (\\%)" in latex
    assert "vote\\_nll" in latex
    assert "\\caption{main results}" in latex


def test_write_table_suffixes(tmp_path):
    table = pd.DataFrame({"Method": ["HEX vote"], "Questions": [3]})
    for fmt, suffix in (("csv", ".csv"), ("md", ".md"), ("latex", ".tex")):
        path = write_table(table, tmp_path / "out" / "main", fmt)
        assert path.suffix == suffix
        assert "HEX vote" in path.read_text()
    with pytest.raises(ValueError, match="unknown table format"):
        render_table(table, "html")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hexlab")
    report_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_scale_command_writes_curves(run_dir, tmp_path, capsys):
    out = tmp_path / "curves.parquet"
    args = parse(["scale", str(run_dir), "--draws", "7", "--bootstrap", "50", "--out", str(out)])
    assert args.func(args) == 0
    curves = pd.read_parquet(out)
    # With 7 draws, the sizes 1 to 3 have C(4, n) = 4, 6, 4 subsets and size 4 has one.
    assert curves[curves["method"] == "random"].groupby("n")["subsets"].first().tolist() == [
        4,
        6,
        4,
        1,
    ]
    assert set(curves["dataset"]) == {"gsm8k"}
    assert set(curves["model"]) == {"toy-mdm"}
    printed = capsys.readouterr().out
    assert "Accuracy (%)" in printed
    assert f"wrote {out}" in printed


def test_scale_command_honours_max_paths(run_dir, tmp_path):
    out = tmp_path / "curves.csv"
    args = parse(
        ["scale", str(run_dir), "--max-paths", "2", "--bootstrap", "10", "--out", str(out)]
    )
    args.func(args)
    assert pd.read_csv(out)["n"].max() == 2


def test_scale_command_rejects_draws_for_prefix(run_dir):
    args = parse(["scale", str(run_dir), "--method", "prefix", "--draws", "5"])
    with pytest.raises(ValueError, match="--draws"):
        args.func(args)


def test_tables_command_combines_runs(tmp_path):
    first = write_run(tmp_path / "gsm")
    second = write_run(tmp_path / "arc", {**CONFIG, "dataset": "arc_challenge"})
    out = tmp_path / "tables"
    argv = ["tables", str(first), str(second), "--format", "md", "--out", str(out)]
    args = parse([*argv, "--bootstrap", "50", "--sizes", "2", "4"])
    assert args.func(args) == 0
    written = sorted(path.name for path in out.iterdir())
    assert written == [
        "collapse_ablation.md",
        "main_results.md",
        "scaling.md",
        "selection_vs_voting.md",
    ]
    scaling = (out / "scaling.md").read_text()
    assert "arc_challenge" in scaling
    assert "gsm8k" in scaling
    # Two runs x two sizes, below the header and rule lines.
    assert len(scaling.splitlines()) == 2 + 4


def test_tables_command_prints_latex(run_dir, capsys):
    args = parse(["tables", str(run_dir), "--format", "latex", "--bootstrap", "20"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("\\toprule") == 4


def test_complete_only_keeps_full_questions(tmp_path):
    # make_paths rows run q1 paths 0-3, q2 paths 0-3, q3 paths 0-3, so row 8 is q3's path 0.
    run = write_run(tmp_path / "run", paths=make_paths().drop(index=8))
    curves = {}
    for flags in ([], ["--complete-only"]):
        out = tmp_path / f"curves{len(flags)}.csv"
        argv = ["scale", str(run), "--method", "prefix", "--bootstrap", "10", "--out", str(out)]
        args = parse([*argv, *flags])
        assert args.func(args) == 0
        curves[bool(flags)] = pd.read_csv(out)
    assert set(curves[False]["n_questions"]) == {3}
    assert set(curves[True]["n_questions"]) == {2}
    accuracy = curves[True][curves[True]["metric"] == "accuracy"].sort_values("n")["estimate"]
    # Prefix votes of q1 and q2 alone: q1 is right at every n (A first, ties go to A);
    # q2 has no answer at n=1, C at n=2 and n=3 (C-D tie), D at n=4. So 1/2, 1/2, 1/2, 2/2.
    assert accuracy.tolist() == pytest.approx([1 / 2, 1 / 2, 1 / 2, 1])


def test_complete_only_parses_for_every_command(run_dir):
    for command in (["scale"], ["tables", "--format", "md"], ["figures", "--out", "x"]):
        args = parse([command[0], str(run_dir), *command[1:], "--complete-only"])
        assert args.complete_only


def test_tables_command_skips_selection_without_nll(tmp_path):
    run = write_run(tmp_path / "imported", paths=make_paths().assign(nll=float("nan")))
    out = tmp_path / "tables"
    args = parse(["tables", str(run), "--format", "csv", "--bootstrap", "10", "--out", str(out)])
    assert args.func(args) == 0
    written = sorted(path.name for path in out.iterdir())
    assert "selection_vs_voting.csv" not in written
    assert "lowest-NLL path" not in (out / "main_results.csv").read_text()


def test_load_run_without_config_warns(tmp_path, caplog):
    directory = tmp_path / "bare"
    directory.mkdir()
    make_paths().to_parquet(directory / "paths.parquet")
    _, config = load_run(directory)
    assert config == {}
    assert "no config.json" in caplog.text
