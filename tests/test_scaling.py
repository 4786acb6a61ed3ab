"""Tests of the scaling curves, vote table and run loader in hexlab.scaling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hexlab.scaling import (
    ScalingConfig,
    bootstrap_intervals,
    build_arrays,
    find_config_value,
    load_run,
    scaling_curves,
    vote_table,
)

# Three questions x four paths, in path order. Correct keys: A (q1), D (q2), F (q3).
#   q1: A  B  A  B     q2: -  C  D  D     q3: E  E  F  F     ("-" = no parsable answer)
KEYS = {"q1": ["A", "B", "A", "B"], "q2": [None, "C", "D", "D"], "q3": ["E", "E", "F", "F"]}
GOLD = {"q1": "A", "q2": "D", "q3": "F"}
NFE = [10, 20, 30, 40]
NLL = {"q1": [0.5, 0.1, 0.6, 0.7], "q2": [0.2, 0.9, 0.4, 0.3], "q3": [0.9, 0.8, 0.5, 0.7]}


def make_paths(keys: dict = KEYS) -> pd.DataFrame:
    rows = []
    for question, answers in keys.items():
        for path_id, key in enumerate(answers):
            rows.append(
                {
                    "question_id": question,
                    "path_id": path_id,
                    "answer_key": key,
                    "answer": key,
                    "correct": key == GOLD[question],
                    "nfe": NFE[path_id],
                    "nll": NLL[question][path_id],
                }
            )
    return pd.DataFrame(rows)


def curve_values(curves: pd.DataFrame, method: str, metric: str) -> list[float]:
    selected = curves[(curves["method"] == method) & (curves["metric"] == metric)]
    return selected.sort_values("n")["estimate"].tolist()


@pytest.fixture(scope="module")
def small_curves() -> pd.DataFrame:
    return scaling_curves(make_paths(), ScalingConfig(draws=100, bootstrap=200, seed=3))


def test_prefix_accuracy_hand_computed(small_curves):
    # Votes of the first n paths, correct per question (q1, q2, q3):
    # n=1: A / none / E -> 1,0,0. n=2: A (A-B tie, A first) / C / E -> 1,0,0.
    # n=3: A / C (C-D tie, C first) / E -> 1,0,0. n=4: A (tie) / D / E (tie) -> 1,1,0.
    expected = [1 / 3, 1 / 3, 1 / 3, 2 / 3]
    assert curve_values(small_curves, "prefix", "accuracy") == pytest.approx(expected)


def test_prefix_tie_rate_hand_computed(small_curves):
    # Ties: n=2 q1 (A-B); n=3 q2 (C-D); n=4 q1 (2-2) and q3 (2-2).
    expected = [0, 1 / 3, 1 / 3, 2 / 3]
    assert curve_values(small_curves, "prefix", "tie_rate") == pytest.approx(expected)


def test_prefix_coverage_hand_computed(small_curves):
    # q1 is covered from n=1; q2 (D at path 2) and q3 (F at path 2) from n=3.
    expected = [1 / 3, 1 / 3, 1, 1]
    assert curve_values(small_curves, "prefix", "coverage") == pytest.approx(expected)


def test_prefix_forward_passes_sum_nfe(small_curves):
    selected = small_curves[(small_curves["method"] == "prefix")]
    by_n = selected.groupby("n")["forward_passes"].first()
    # Cumulative sums of nfe 10, 20, 30, 40.
    assert by_n.tolist() == pytest.approx([10, 30, 60, 100])


def test_random_accuracy_hand_computed(small_curves):
    # n=1: half the slots carry the correct key in every question -> 1/2.
    # n=2 over 6 pairs: q1 4/6 (loses {1,2}: B first, {1,3}: B,B), q2 3/6 ({0,2},{0,3},{2,3}),
    #   q3 1/6 ({2,3}) -> 8/18.
    # n=3 over 4 triples: 2/4 in each question -> 1/2. n=4 equals the prefix value 2/3.
    expected = [1 / 2, 8 / 18, 1 / 2, 2 / 3]
    assert curve_values(small_curves, "random", "accuracy") == pytest.approx(expected)


def test_random_tie_rate_hand_computed(small_curves):
    # n=2: q1 ties in 4 of 6 pairs, q2 in 2 ({1,2},{1,3}), q3 in 4 -> 10/18.
    # n=3: only q2 ties ({0,1,2},{0,1,3}) -> 2/12.
    expected = [0, 10 / 18, 2 / 12, 2 / 3]
    assert curve_values(small_curves, "random", "tie_rate") == pytest.approx(expected)


def test_random_coverage_hand_computed(small_curves):
    # n=2: each question misses the correct key in exactly one of 6 pairs -> 5/6.
    expected = [1 / 2, 5 / 6, 1, 1]
    assert curve_values(small_curves, "random", "coverage") == pytest.approx(expected)


def test_random_forward_passes_expected_sum(small_curves):
    selected = small_curves[(small_curves["method"] == "random")]
    by_n = selected.groupby("n")["forward_passes"].first()
    # A random n-subset of slots with nfe 10..40 (mean 25) spends 25 n on average.
    assert by_n.tolist() == pytest.approx([25, 50, 75, 100])


def test_random_small_sizes_are_enumerated(small_curves):
    selected = small_curves[small_curves["method"] == "random"]
    subsets = selected.groupby("n")["subsets"].first()
    # C(4, n) <= 100 draws for every n, so every size is enumerated exactly.
    assert subsets.tolist() == [4, 6, 4, 1]


def test_missing_paths_are_absent():
    keys = {**KEYS, "q2": [None, "C", "D"]}
    curves = scaling_curves(make_paths(keys), ScalingConfig(draws=10, bootstrap=10))
    # Without its path 3, q2 votes C-D at n=4 as well: a tie that C wins, so only q1 is correct.
    assert curve_values(curves, "prefix", "accuracy")[-1] == pytest.approx(1 / 3)
    forward = curves[curves["method"] == "prefix"].groupby("n")["forward_passes"].first()
    # At n=4, q2 spends 60 instead of 100 forward passes: (100 + 60 + 100) / 3.
    assert forward.iloc[-1] == pytest.approx(260 / 3)


def random_paths(num_questions: int, num_paths: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 4, size=(num_questions, num_paths)).astype(str).astype(object)
    keys[rng.random(keys.shape) < 0.1] = None
    return pd.DataFrame(
        {
            "question_id": np.repeat(np.arange(num_questions), num_paths),
            "path_id": np.tile(np.arange(num_paths), num_questions),
            "answer_key": keys.ravel(),
            "correct": (keys == "0").ravel(),
            "nfe": np.tile(np.arange(1, num_paths + 1), num_questions),
        }
    )


def test_monte_carlo_matches_enumeration():
    paths = random_paths(num_questions=40, num_paths=10, seed=7)
    exact = scaling_curves(paths, ScalingConfig(draws=300, bootstrap=10), methods=("random",))
    sampled = scaling_curves(paths, ScalingConfig(draws=200, bootstrap=10), methods=("random",))
    middle = [4, 5, 6]
    # C(10, 4..6) = 210, 252, 210: exact with 300 draws, sampled with 200 draws.
    assert (exact[exact["n"].isin(middle)]["subsets"] > 200).all()
    assert (sampled[sampled["n"].isin(middle)]["subsets"] == 200).all()
    for metric in ("accuracy", "tie_rate", "coverage"):
        exact_values = np.array(curve_values(exact, "random", metric))[3:6]
        sampled_values = np.array(curve_values(sampled, "random", metric))[3:6]
        # 40 questions x 200 draws give a standard error near 0.005 per estimate.
        assert np.abs(exact_values - sampled_values).max() < 0.03, metric


def test_random_curve_reproducible_by_seed():
    paths = random_paths(num_questions=30, num_paths=12, seed=1)
    first = scaling_curves(paths, ScalingConfig(draws=50, bootstrap=50, seed=5))
    second = scaling_curves(paths, ScalingConfig(draws=50, bootstrap=50, seed=5))
    other = scaling_curves(paths, ScalingConfig(draws=50, bootstrap=50, seed=6))
    pd.testing.assert_frame_equal(first, second)
    assert not np.allclose(first["estimate"], other["estimate"])


def test_intervals_contain_estimates():
    curves = scaling_curves(random_paths(60, 8, seed=2), ScalingConfig(draws=50, bootstrap=300))
    assert (curves["ci_low"] <= curves["estimate"] + 1e-12).all()
    assert (curves["estimate"] <= curves["ci_high"] + 1e-12).all()


def test_intervals_narrow_with_more_questions():
    rng = np.random.default_rng(0)
    config = ScalingConfig(bootstrap=500)
    few = rng.random((50, 1)) < 0.6
    many = rng.random((5000, 1)) < 0.6
    few_low, few_high = bootstrap_intervals(few.astype(float), config, rng)
    many_low, many_high = bootstrap_intervals(many.astype(float), config, rng)
    # Interval width shrinks like 1 / sqrt(questions): about 0.27 for 50, 0.027 for 5,000.
    assert (many_high - many_low)[0] < (few_high - few_low)[0] / 3


def test_vote_table_matches_rule():
    votes = vote_table(make_paths()).set_index("question_id")
    assert votes["voted_key"].tolist() == ["A", "D", "E"]
    assert votes["correct"].tolist() == [True, True, False]
    assert votes["tie"].tolist() == [True, False, True]
    assert votes["answered_paths"].tolist() == [4, 3, 4]


def test_vote_table_nll_columns():
    votes = vote_table(make_paths()).set_index("question_id")
    # NLL tie-break: q1 A-B tie -> B (min NLL 0.1); q2 has no tie -> D; q3 E-F tie -> F (0.5).
    assert votes["nll_key"].tolist() == ["B", "D", "F"]
    assert votes["nll_correct"].tolist() == [False, True, True]
    # Lowest-NLL path: q1 path 1 (B), q2 path 0 (no answer), q3 path 2 (F).
    assert votes["selected_correct"].tolist() == [False, False, True]


def test_vote_table_agrees_with_full_prefix():
    paths = random_paths(80, 9, seed=4).sample(frac=0.9, random_state=0)
    votes = vote_table(paths)
    curves = scaling_curves(paths, ScalingConfig(bootstrap=10), methods=("prefix",))
    final = curves[curves["n"] == 9].set_index("metric")["estimate"]
    assert final["accuracy"] == pytest.approx(votes["correct"].mean())
    assert final["tie_rate"] == pytest.approx(votes["tie"].mean())


def test_build_arrays_codes_keys_by_first_appearance():
    arrays = build_arrays(make_paths())
    assert arrays.keys.tolist() == [[0, 1, 0, 1], [-1, 0, 1, 1], [0, 0, 1, 1]]
    # Key correctness per question plus the spare False column.
    assert arrays.key_correct.tolist() == [
        [True, False, False],
        [False, True, False],
        [False, True, False],
    ]


def test_build_arrays_rejects_duplicate_paths():
    paths = make_paths()
    with pytest.raises(ValueError, match="repeats"):
        build_arrays(pd.concat([paths, paths.iloc[:1]]))


def test_max_paths_truncates_curve():
    curves = scaling_curves(make_paths(), ScalingConfig(draws=10, bootstrap=10, max_paths=2))
    assert sorted(curves["n"].unique()) == [1, 2]


def test_unknown_method_rejected():
    with pytest.raises(ValueError, match="unknown scaling methods"):
        scaling_curves(make_paths(), methods=("greedy",))


def test_load_run_reads_files(tmp_path):
    make_paths().to_parquet(tmp_path / "paths.parquet")
    (tmp_path / "config.json").write_text(json.dumps({"data": {"dataset": {"name": "gsm8k"}}}))
    paths, config = load_run(tmp_path)
    assert len(paths) == 12
    assert find_config_value(config, "dataset") == "gsm8k"
    assert find_config_value(config, "model") is None


def test_load_run_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="hexlab run"):
        load_run(tmp_path / "absent")


def test_load_run_missing_paths_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="paths.parquet"):
        load_run(tmp_path)


def test_load_run_missing_column(tmp_path):
    make_paths().drop(columns=["nfe"]).to_parquet(tmp_path / "paths.parquet")
    with pytest.raises(ValueError, match="nfe"):
        load_run(tmp_path)


def test_vote_table_equal_nll_tie():
    paths = pd.DataFrame(
        {
            "question_id": ["q"] * 4,
            "path_id": [0, 1, 2, 3],
            "answer_key": ["A", "B", "B", "A"],
            "correct": [False, True, True, False],
            "nfe": [1, 1, 1, 1],
            "nll": [0.9, 0.2, 0.8, 0.2],
        }
    )
    votes = vote_table(paths).iloc[0]
    # A and B tie 2-2 with equal lowest NLL 0.2; B's lowest-NLL path (1) precedes A's (3).
    assert votes["voted_key"] == "A"
    assert votes["nll_key"] == "B"
    assert votes["selected_correct"]
