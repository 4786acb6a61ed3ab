"""Tests of the figures, the trajectory heatmap and the `hexlab figures` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from hexlab import figures, report_cli  # noqa: E402
from hexlab.decode import PathSpec, Trajectories  # noqa: E402
from hexlab.scaling import ScalingConfig, scaling_curves  # noqa: E402
from hexlab.tables import collapse_ablation, main_results  # noqa: E402
from hexlab.trajectory_figure import (  # noqa: E402
    plot_trajectory,
    run_trajectory,
    trajectory_frame,
    trajectory_states,
)

SMALL = ScalingConfig(draws=20, bootstrap=50, seed=0)


def make_paths(num_questions: int = 12, seed: int = 0) -> pd.DataFrame:
    """Build six schedules per question; b32 is one block for a 32-token generation."""
    rng = np.random.default_rng(seed)
    schedules = ["b2", "b4", "b8", "b16", "b32", "b4,s1"]
    rows = []
    for question in range(num_questions):
        for path_id, schedule in enumerate(schedules):
            key = str(rng.integers(0, 3)) if rng.random() > 0.1 else None
            rows.append(
                {
                    "question_id": question,
                    "path_id": path_id,
                    "answer_key": key,
                    "answer": key,
                    "correct": key == "0",
                    "nfe": 64 // (path_id + 1),
                    "nll": rng.random(),
                    "collapsed": schedule == "b32" and rng.random() < 0.5,
                    "schedule": schedule,
                }
            )
    return pd.DataFrame(rows)


def write_run(directory: Path, dataset: str, seed: int = 0) -> Path:
    directory.mkdir(parents=True)
    make_paths(seed=seed).to_parquet(directory / "paths.parquet")
    config = {"dataset": dataset, "model": {"name": "toy-mdm"}, "gen_length": 32}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    frames = [
        scaling_curves(make_paths(seed=seed), SMALL, labels={"dataset": name, "model": "toy"})
        for seed, name in enumerate(["gsm8k", "custom_set"])
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return main_results(make_paths(), SMALL, gen_length=32, labels={"dataset": "gsm8k"})


def reference_markers(axes) -> list[PathCollection]:
    return [
        artist
        for artist in axes.collections
        if isinstance(artist, PathCollection)
        and artist.get_label() == figures.PAPER_REFERENCE_SOURCE
    ]


def test_paper_reference_table():
    reference = figures.PAPER_REFERENCE
    assert len(reference) == 24
    gsm8k = reference[(reference["dataset"] == "gsm8k") & (reference["n"] == 30)].iloc[0]
    assert (gsm8k["accuracy"], gsm8k["tie_rate"]) == (88.1, 1.1)
    math = reference[(reference["dataset"] == "math500") & (reference["n"] == 10)].iloc[0]
    assert (math["accuracy"], math["tie_rate"]) == (37.8, 18.2)
    assert set(reference["source"]) == {"HEX paper, LLaDA-8B-Instruct"}


def test_normalise_dataset_aliases():
    assert figures.normalise_dataset("ARC-Challenge") == "arc_challenge"
    assert figures.normalise_dataset("GSM8K") == "gsm8k"
    assert figures.normalise_dataset("my_set") == "my_set"


def test_scaling_curves_facets(curves):
    figure = figures.plot_scaling_curves(curves, methods=("prefix", "random"))
    grid = np.array(figure.axes).reshape(2, 2)
    assert [axes.get_title() for axes in grid[0]] == ["GSM8K", "custom_set"]
    # One line per method in every panel.
    assert all(len(axes.lines) == 2 for axes in grid.flat)
    assert not any(reference_markers(axes) for axes in grid.flat)


def test_scaling_curves_integer_path_ticks():
    three_paths = ScalingConfig(draws=20, bootstrap=20, max_paths=3)
    curves = scaling_curves(make_paths(), three_paths, labels={"dataset": "toy"})
    figure = figures.plot_scaling_curves(curves)
    # Without an integer locator, 1 to 3 paths get ticks at 1.0, 1.5, 2.0, 2.5 and 3.0.
    ticks = figure.axes[-1].get_xticks()
    assert all(tick == int(tick) for tick in ticks)


def test_scaling_curves_paper_reference(curves):
    figure = figures.plot_scaling_curves(curves, paper_reference=True)
    grid = np.array(figure.axes).reshape(2, 2)
    gsm8k_markers = reference_markers(grid[0, 0])
    assert len(gsm8k_markers) == 1
    # Six reference points, at 5 to 30 paths, drawn as fractions.
    offsets = gsm8k_markers[0].get_offsets()
    assert offsets[:, 0].tolist() == [5, 10, 15, 20, 25, 30]
    assert offsets[-1, 1] == pytest.approx(0.881)
    assert not reference_markers(grid[0, 1])


def test_scaling_curves_against_forward_passes(curves):
    figure = figures.plot_scaling_curves(curves, x="forward_passes")
    assert figure.axes[-1].get_xlabel() == "Forward passes per question"


def test_scaling_curves_rejects_missing_method(curves):
    with pytest.raises(ValueError, match="no scaling curves"):
        figures.plot_scaling_curves(curves[curves["method"] == "prefix"], methods=("random",))


def test_main_results_bars(results):
    figure = figures.plot_main_results(results)
    axes = figure.axes[0]
    # Five schedules plus one one-block baseline plus the vote.
    assert len(axes.patches) == 7
    # Bars run top to bottom: the one-block baseline, schedules in path order, the vote.
    labels = [label.get_text() for label in axes.get_yticklabels()]
    assert labels == ["b32", "b2", "b4", "b8", "b16", "b4,s1", "HEX vote"]


def test_collapse_ablation_figure():
    ablation = collapse_ablation(make_paths(), 32, SMALL, labels={"dataset": "gsm8k"})
    figure = figures.plot_collapse_ablation(ablation)
    accuracy_axes, collapse_axes = figure.axes
    # Two decoding families x one dataset.
    assert len(accuracy_axes.patches) == 2
    assert len(collapse_axes.patches) == 2
    with pytest.raises(ValueError, match="generation length"):
        figures.plot_collapse_ablation(pd.DataFrame())


def test_selection_vs_voting_figure(results):
    figure = figures.plot_selection_vs_voting(results)
    assert len(figure.axes[0].patches) == 3
    without_nll = main_results(make_paths().drop(columns=["nll"]), SMALL)
    with pytest.raises(ValueError, match="NLL values"):
        figures.plot_selection_vs_voting(without_nll)
    all_nan = main_results(make_paths().assign(nll=np.nan), SMALL)
    with pytest.raises(ValueError, match="NLL values"):
        figures.plot_selection_vs_voting(all_nan)


def make_trajectory() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "position": [0, 1, 2, 3],
            "step_revealed": [2, 0, 3, np.nan],
            "token_class": ["text", "eot", "eos", "text"],
        }
    )


def test_trajectory_states_grid():
    grid = trajectory_states(make_trajectory(), num_steps=4)
    # Codes: 0 masked, 1 text, 2 eot, 3 eos; position 3 is never revealed.
    expected = [[0, 2, 0, 0], [0, 2, 0, 0], [1, 2, 0, 0], [1, 2, 3, 0]]
    assert grid.tolist() == expected


def test_trajectory_rejects_bad_input():
    bad_class = make_trajectory().assign(token_class=["text", "pad", "eos", "text"])
    with pytest.raises(ValueError, match="token_class"):
        trajectory_states(bad_class, 4)
    with pytest.raises(ValueError, match="step_revealed"):
        trajectory_states(make_trajectory(), 3)
    with pytest.raises(ValueError, match="lacks the columns"):
        trajectory_states(make_trajectory().drop(columns=["position"]), 4)


def test_trajectory_heatmap_image():
    figure = plot_trajectory(make_trajectory(), 4, title="one answer")
    axes = figure.axes[0]
    assert axes.images[0].get_array().shape == (4, 4)
    assert axes.get_xlabel() == "Answer position"
    legend_labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_labels == ["masked", "text token", "end-of-turn", "end-of-text"]


def make_trajectories() -> Trajectories:
    """Build two decoded rows of a 4-token answer; the toy model's ids are eos 0 and eot 2."""
    shape = (2, 4)
    return Trajectories(
        gen_length=4,
        mask_token_id=3,
        watch_positions=(),
        specs=[PathSpec.uniform(2, 4, steps=3), PathSpec.uniform(4, 4, steps=4)],
        row_ids=np.array([0, 1]),
        prompt_lengths=np.array([5, 5], dtype=np.int32),
        tokens=np.array([[5, 2, 0, 0], [7, 8, 9, 0]], dtype=np.int32),
        reveal_step=np.array([[1, 0, 2, -1], [0, 1, 2, 3]], dtype=np.int16),
        confidence=np.zeros(shape, dtype=np.float16),
        score=np.zeros(shape, dtype=np.float16),
        topk_ids=np.zeros((*shape, 1), dtype=np.int32),
        topk_probs=np.zeros((*shape, 1), dtype=np.float16),
        nfe=np.array([3, 4], dtype=np.int16),
    )


def test_trajectory_frame_classifies_tokens():
    frame = trajectory_frame(make_trajectories(), eos_token_id=0, eot_token_id=2)
    assert frame["position"].tolist() == [0, 1, 2, 3]
    # Position 3 was never revealed (-1), so it has no reveal step.
    assert frame["step_revealed"].tolist()[:3] == [1, 0, 2]
    assert np.isnan(frame["step_revealed"].iloc[3])
    assert frame["token_class"].tolist() == ["text", "eot", "eos", "eos"]
    without_eot = trajectory_frame(make_trajectories(), eos_token_id=0, index=1)
    assert without_eot["token_class"].tolist() == ["text", "text", "text", "eos"]


def write_decoded_run(directory: Path) -> Path:
    """Write a run directory as `hexlab run` does, with trajectories for question "0"."""
    directory.mkdir(parents=True)
    paths = make_paths().assign(question_id=lambda frame: frame["question_id"].astype(str))
    # Rows 0 and 1 (question "0", paths 0 and 1) have trajectories in chunk 0.
    paths = paths.assign(chunk=0, trajectory_row=np.arange(len(paths)))
    paths.to_parquet(directory / "paths.parquet")
    config = {"dataset": "toy", "model": "toy", "gen_length": 32}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "chunks").mkdir()
    make_trajectories().save(directory / "chunks" / "chunk-00000.npz")
    return directory


def test_run_trajectory_reads_chunks(tmp_path):
    run = write_decoded_run(tmp_path / "toy")
    frame, steps, title = run_trajectory(run, "0", 1, stop_ids=(0, 2))
    assert frame["token_class"].tolist() == ["text", "text", "text", "eos"]
    # The second row took 4 forward passes, and reveal steps run from 0 to 3.
    assert steps == 4
    assert title == "question 0, path 1 (b4/steps4)"
    assert trajectory_states(frame, steps).shape == (4, 4)


def test_run_trajectory_needs_chunks(tmp_path):
    directory = write_run(tmp_path / "imported", "gsm8k")
    with pytest.raises(FileNotFoundError, match="chunks"):
        run_trajectory(directory, "0", 0, stop_ids=(0, None))


def test_save_figure_rejects_unknown_format(results, tmp_path):
    with pytest.raises(ValueError, match="unknown figure formats"):
        figures.save_figure(figures.plot_main_results(results), tmp_path / "main", ("jpg",))


def test_save_figure_writes_png_and_pdf(results, tmp_path):
    written = figures.save_figure(figures.plot_main_results(results), tmp_path / "sub" / "main")
    assert [path.name for path in written] == ["main.png", "main.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_bytes()[:5] == b"%PDF-"


def test_figures_command_writes_all(tmp_path, capsys):
    first = write_run(tmp_path / "gsm", "gsm8k")
    second = write_run(tmp_path / "arc", "ARC-Challenge", seed=1)
    trajectory = tmp_path / "trajectory.csv"
    make_trajectory().to_csv(trajectory, index=False)
    out = tmp_path / "figures"
    parser = argparse.ArgumentParser(prog="hexlab")
    report_cli.register(parser.add_subparsers(dest="command"))
    argv = ["figures", str(first), str(second), "--out", str(out), "--paper-reference"]
    args = parser.parse_args([*argv, "--bootstrap", "20", "--trajectory", str(trajectory)])
    assert args.func(args) == 0
    names = {path.stem for path in out.glob("*.png")}
    expected = {
        "scaling",
        "scaling_forward_passes",
        "main_results",
        "collapse_ablation",
        "selection_vs_voting",
        "trajectory",
    }
    assert names == expected
    assert len(list(out.glob("*.pdf"))) == len(expected)
    assert "wrote" in capsys.readouterr().out


def test_figures_command_rejects_lone_steps(tmp_path):
    run = write_run(tmp_path / "gsm", "gsm8k")
    parser = argparse.ArgumentParser(prog="hexlab")
    report_cli.register(parser.add_subparsers(dest="command"))
    argv = ["figures", str(run), "--out", str(tmp_path / "out"), "--trajectory-steps", "8"]
    args = parser.parse_args(argv)
    with pytest.raises(ValueError, match="--trajectory FILE"):
        args.func(args)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hexlab")
    report_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_figures_command_draws_run_trajectory(tmp_path, capsys):
    run = write_decoded_run(tmp_path / "toy")
    out = tmp_path / "figures"
    argv = ["figures", str(run), "--out", str(out), "--bootstrap", "10", "--formats", "png"]
    # No token ids given, so the command loads the toy model to read them.
    args = parse([*argv, "--trajectory-question", "0", "--trajectory-path", "0"])
    assert args.func(args) == 0
    assert (out / "trajectory.png").is_file()
    assert not list(out.glob("*.pdf"))
    assert f"wrote {out / 'trajectory.png'}" in capsys.readouterr().out


def test_figures_command_rejects_half_trajectory_options(tmp_path):
    run = write_run(tmp_path / "gsm", "gsm8k")
    argv = ["figures", str(run), "--out", str(tmp_path / "out")]
    for extra, message in (
        (["--trajectory-question", "0"], "given together"),
        (["--trajectory-path", "0"], "given together"),
        (["--eot-token-id", "2", "--trajectory-question", "0", "--trajectory-path", "0"], "eos"),
    ):
        args = parse([*argv, *extra])
        with pytest.raises(ValueError, match=message):
            args.func(args)


def test_figures_command_skips_selection_without_nll(tmp_path, capsys):
    directory = tmp_path / "imported"
    directory.mkdir()
    make_paths().assign(nll=np.nan).to_parquet(directory / "paths.parquet")
    (directory / "config.json").write_text(json.dumps({"dataset": "gsm8k", "model": "m"}))
    out = tmp_path / "figures"
    args = parse(["figures", str(directory), "--out", str(out), "--bootstrap", "10"])
    assert args.func(args) == 0
    assert not (out / "selection_vs_voting.png").exists()
    assert "skipped selection_vs_voting" in capsys.readouterr().out
    # Neither the config nor the paths give a generation length, so the ablation is skipped too.
    assert not (out / "collapse_ablation.png").exists()
