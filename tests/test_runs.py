"""The run job: presets, configuration checks, the run directory, resume and sharding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hexlab.cli import main
from hexlab.runs import store
from hexlab.runs.aggregate import grade_texts, run_metrics, vote_table
from hexlab.runs.config import RunConfig, hex_block_sizes, parse_int_list, preset_paths
from hexlab.runs.job import load_trajectories, run

# columns that measure time, so they differ between two runs of the same work
TIMING = ["seconds"]


def small_run(out: Path, **overrides) -> RunConfig:
    settings = dict(
        model="toy",
        dataset="toy",
        paths="hex5",
        out=out,
        limit=3,
        batch_size=8,
        device="cpu",
        chunk_questions=1,
    )
    settings.update(overrides)
    return RunConfig(**settings)


def test_hex_block_sizes_follow_the_paper_at_256():
    # G = 256, 128 steps: G/32 = 8 doubling to G/2 = 128
    assert hex_block_sizes(256, 128) == [8, 16, 32, 64, 128]


def test_hex_block_sizes_need_one_step_per_block():
    # G = 32, 16 steps: G/32 = 1 would give 32 blocks for 16 steps, so sizes start at 32/16 = 2
    assert hex_block_sizes(32, 16) == [2, 4, 8, 16, 32]


def test_presets_expand_to_the_documented_paths():
    config = RunConfig()
    assert len(preset_paths(RunConfig(paths="hex25"), 256, 128)) == 25
    two_block = preset_paths(RunConfig(paths="two-block25"), 256, 128)
    assert [spec.block_sizes for spec in two_block[:2]] == [(8, 248), (16, 240)]
    assert two_block[-1].block_sizes == (200, 56)
    baselines = preset_paths(RunConfig(paths="baselines"), 256, 128)
    assert {spec.remasking for spec in baselines} == {"low_confidence", "top_k_margin", "random"}
    assert all(spec.block_sizes == (256,) for spec in baselines)
    assert config.paths == "hex25"


def test_custom_paths_are_ordered_by_block_size():
    config = RunConfig(paths="custom", blocks=(16, 8), seeds=(0, 1), temperature=0.9)
    specs = preset_paths(config, 32, 16)
    assert [spec.block_sizes[0] for spec in specs] == [8, 8, 16, 16]
    assert [spec.seed for spec in specs] == [0, 1, 0, 1]


def test_parse_int_list_reads_values_and_ranges():
    assert parse_int_list("8,16,32") == (8, 16, 32)
    assert parse_int_list("0-4") == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="for example 8,16,32"):
        parse_int_list("eight")


def test_aggregate_votes_a_hand_built_question():
    # paths 0..3 answer 5, 7, 7, none: 7 wins two votes to one; path 3 does not vote
    texts = ["\\boxed{5}", "\\boxed{7}", "so \\boxed{7}", "   "]
    graded = grade_texts("toy", texts, ["7"] * 4)
    paths = pd.concat(
        [
            pd.DataFrame(
                {
                    "question_id": "q",
                    "path_id": range(4),
                    "schedule": ["b2", "b4", "b4", "b8"],
                    "gold": "7",
                    "nfe": 16,
                }
            ),
            graded,
        ],
        axis=1,
    )
    votes = vote_table(paths)
    assert votes.loc[0, "answer_key"] == "7"
    assert bool(votes.loc[0, "correct"])
    assert votes.loc[0, "n_voting"] == 3
    metrics = run_metrics(paths, votes)
    assert metrics["collapse_rate"] == 0.25
    assert metrics["single_path_accuracy"] == {"b2": 0.0, "b4": 1.0, "b8": 0.0}
    assert metrics["forward_passes"] == 64


def test_run_writes_the_run_directory(tmp_path):
    result = run(small_run(tmp_path / "run"))
    paths = pd.read_parquet(tmp_path / "run" / store.PATHS)
    votes = pd.read_parquet(tmp_path / "run" / store.VOTES)
    metrics = json.loads((tmp_path / "run" / store.METRICS).read_text())
    config = json.loads((tmp_path / "run" / store.CONFIG).read_text())
    # 3 questions x 5 paths
    assert len(paths) == 15
    assert len(votes) == 3
    required = {
        "question_id",
        "path_id",
        "block_sizes",
        "seed",
        "temperature",
        "remasking",
        "text",
        "answer",
        "answer_key",
        "correct",
        "nll",
        "collapsed",
        "nfe",
    }
    assert required <= set(paths.columns)
    assert paths["nll"].notna().all()
    assert metrics["n_paths"] == 15
    assert metrics == result.metrics
    assert config["weights_hash"]
    assert config["dataset_hash"]
    assert config["gen_length"] == 32
    trajectory = load_trajectories(tmp_path / "run", paths.loc[4, "question_id"], 4)
    assert list(trajectory.tokens[0]) != []


def test_batch_size_does_not_change_results(tmp_path):
    run(small_run(tmp_path / "a", batch_size=15))
    run(small_run(tmp_path / "b", batch_size=4))
    a = pd.read_parquet(tmp_path / "a" / store.PATHS).drop(columns=TIMING)
    b = pd.read_parquet(tmp_path / "b" / store.PATHS).drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)


def test_other_configuration_in_run_dir_is_rejected(tmp_path):
    run(small_run(tmp_path / "run"))
    with pytest.raises(FileExistsError, match="another configuration.*gen_length"):
        run(small_run(tmp_path / "run", gen_length=24, steps=12))


def test_foreign_directory_is_rejected_and_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a hexlab run directory"):
        run(small_run(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_bad_input_leaves_no_files(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="unknown dataset"):
        run(small_run(out, dataset="no-such-set"))
    with pytest.raises(ValueError, match="more than the model's maximum length"):
        run(small_run(out, gen_length=512, steps=256))
    assert not out.exists()


def test_cli_rejects_custom_options_without_blocks(capsys):
    assert main(["run", "--temperature", "0.9"]) == 1
    assert "need --blocks" in capsys.readouterr().err


def _hexlab(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "hexlab", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


RUN_ARGS = [
    "run",
    "--model",
    "toy",
    "--dataset",
    "toy",
    "--paths",
    "hex5",
    "--limit",
    "6",
    "--batch-size",
    "5",
    "--device",
    "cpu",
    "--chunk-questions",
    "1",
]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    reference = tmp_path / "reference"
    assert _hexlab(*RUN_ARGS, "--out", str(reference)).wait(timeout=300) == 0

    # kill with SIGKILL once the first chunk is on disk, then run the same command again
    resumed = tmp_path / "resumed"
    process = _hexlab(*RUN_ARGS, "--out", str(resumed))
    deadline = time.time() + 300
    while not store.finished_chunks(resumed) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(store.finished_chunks(resumed)) < 6
    assert _hexlab(*RUN_ARGS, "--out", str(resumed)).wait(timeout=300) == 0

    for name in (store.PATHS, store.VOTES):
        expected = pd.read_parquet(reference / name).drop(columns=TIMING, errors="ignore")
        actual = pd.read_parquet(resumed / name).drop(columns=TIMING, errors="ignore")
        pd.testing.assert_frame_equal(actual, expected)
    assert not list(resumed.glob("**/*.tmp"))


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = tmp_path / "single"
    assert _hexlab(*RUN_ARGS, "--out", str(single)).wait(timeout=300) == 0
    sharded = tmp_path / "sharded"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "hexlab",
        *RUN_ARGS,
        "--out",
        str(sharded),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in (store.PATHS, store.VOTES):
        expected = pd.read_parquet(single / name).drop(columns=TIMING, errors="ignore")
        actual = pd.read_parquet(sharded / name).drop(columns=TIMING, errors="ignore")
        pd.testing.assert_frame_equal(actual, expected)
    assert json.loads((sharded / store.CONFIG).read_text())["world_size"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--steps", "0"], "invalid --steps 0"),
        (["--gen-length", "0"], "invalid --gen-length 0"),
        (["--limit", "-3"], "invalid --limit -3"),
        (["--paths", "hex5", "--blocks", "8"], "drop one of the two"),
        (["--blocks", "8", "--seeds", "4-0"], "invalid integer list '4-0'"),
    ],
)
def test_cli_rejects_invalid_options(arguments, message, capsys):
    assert main_exit_code(["run", *arguments]) != 0
    assert message in capsys.readouterr().err


def main_exit_code(argv: list[str]) -> int:
    """Exit status of the CLI, whether it returns a code or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def test_steps_beyond_the_window_are_rejected(tmp_path):
    # 64 steps over a 32-token window: each step reveals at least one token, so 32 is the most
    with pytest.raises(ValueError, match="invalid steps 64 for a 32-token answer window"):
        run(small_run(tmp_path / "run", steps=64))
    assert not (tmp_path / "run").exists()
