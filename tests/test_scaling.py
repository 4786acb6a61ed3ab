"""Tests of the scaling curves, the vectorised vote, the per-question votes and the run loader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hexlab.answers import vote_keys
from hexlab.paths_table import complete_questions, find_config_value, has_nll, load_run
from hexlab.scaling import ScalingConfig, bootstrap_intervals, question_votes, scaling_curves
from hexlab.vote_arrays import RunningVote, build_arrays

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


def test_missing_last_path_shortens_vote():
    keys = {**KEYS, "q2": [None, "C", "D"]}
    curves = scaling_curves(make_paths(keys), ScalingConfig(draws=10, bootstrap=10))
    # Without its path 3, q2 votes C-D at n=4 as well: a tie that C wins, so only q1 is correct.
    assert curve_values(curves, "prefix", "accuracy")[-1] == pytest.approx(1 / 3)
    forward = curves[curves["method"] == "prefix"].groupby("n")["forward_passes"].first()
    # At n=4, q2 spends 60 instead of 100 forward passes: (100 + 60 + 100) / 3.
    assert forward.iloc[-1] == pytest.approx(260 / 3)


def make_incomplete_paths() -> pd.DataFrame:
    """Build the KEYS table without paths 0 and 1 of q3, which keeps only F (2), F (3)."""
    paths = make_paths()
    return paths[~((paths["question_id"] == "q3") & (paths["path_id"] < 2))]


@pytest.fixture(scope="module")
def incomplete_curves() -> pd.DataFrame:
    return scaling_curves(make_incomplete_paths(), ScalingConfig(draws=100, bootstrap=20))


def test_prefix_uses_own_first_paths(incomplete_curves):
    # q3 votes with its own first n paths F, F: correct from n=1, though it lacks path ids 0, 1.
    # n=1: A / none / F -> 1,0,1. n=2: A (tie) / C / F -> 1,0,1. n=3: A / C (tie) / F -> 1,0,1.
    # n=4: A / D / F (its two paths) -> 1,1,1.
    expected = [2 / 3, 2 / 3, 2 / 3, 1]
    assert curve_values(incomplete_curves, "prefix", "accuracy") == pytest.approx(expected)
    # Coverage: q1 and q3 from n=1, q2 (D at path 2) from n=3.
    expected_coverage = [2 / 3, 2 / 3, 1, 1]
    assert curve_values(incomplete_curves, "prefix", "coverage") == pytest.approx(expected_coverage)
    # Ties: n=2 q1 only (q2 has one answer, q3 two Fs); n=3 q2; n=4 q1.
    expected_ties = [0, 1 / 3, 1 / 3, 1 / 3]
    assert curve_values(incomplete_curves, "prefix", "tie_rate") == pytest.approx(expected_ties)


def test_prefix_forward_passes_stop_at_own_paths(incomplete_curves):
    prefix = incomplete_curves[incomplete_curves["method"] == "prefix"]
    by_n = prefix.groupby("n")["forward_passes"].first()
    # q1 and q2 spend 10, 30, 60, 100; q3 spends 30, then 30 + 40 = 70 from n=2 on.
    expected = [(10 + 10 + 30) / 3, (30 + 30 + 70) / 3, (60 + 60 + 70) / 3, (100 + 100 + 70) / 3]
    assert by_n.tolist() == pytest.approx(expected)


def test_random_uses_own_paths(incomplete_curves):
    # q3 is always correct. q1 and q2 as in the complete table: n=1 1/2 each, n=2 4/6 and 3/6.
    # n=1: (1/2 + 1/2 + 1) / 3 = 2/3. n=2: (4/6 + 3/6 + 1) / 3 = 13/18.
    # n=3: (2/4 + 2/4 + 1) / 3 = 2/3. n=4: (1 + 1 + 1) / 3 = 1.
    expected = [2 / 3, 13 / 18, 2 / 3, 1]
    assert curve_values(incomplete_curves, "random", "accuracy") == pytest.approx(expected)
    by_n = incomplete_curves[incomplete_curves["method"] == "random"].groupby("n")
    # q1 and q2 spend 25 n on average; q3 spends 35 at n=1 and 70 from n=2 on.
    expected_passes = [85 / 3, 170 / 3, 220 / 3, 270 / 3]
    assert by_n["forward_passes"].first().tolist() == pytest.approx(expected_passes)


def test_random_sampling_uses_own_paths():
    # q1 gives B on all four paths (wrong). q3 keeps only its paths 2 and 3, both F (right).
    paths = make_paths({"q1": ["B"] * 4, "q3": ["E", "E", "F", "F"]})
    paths = paths[~((paths["question_id"] == "q3") & (paths["path_id"] < 2))]
    curves = scaling_curves(paths, ScalingConfig(draws=5, bootstrap=10), methods=("random",))
    # C(4, 2) = 6 pairs exceed 5 draws, so n=2 is sampled and the other sizes are enumerated.
    assert curves.groupby("n")["subsets"].first().tolist() == [4, 5, 4, 1]
    # Every sampled pair of q3 is both of its paths, so q3 is right in all of them and the
    # estimate at n=2 is exactly (0 + 1) / 2, with no sampling error.
    assert curve_values(curves, "random", "accuracy")[1] == 0.5
    assert curve_values(curves, "random", "coverage")[1] == 0.5


def test_complete_questions_drops_incomplete():
    kept = complete_questions(make_incomplete_paths())
    assert sorted(kept["question_id"].unique()) == ["q1", "q2"]
    assert len(kept) == 8


def test_complete_questions_rejects_all_incomplete():
    paths = make_paths()
    # Each question lacks a different path, so none has all four path ids.
    staggered = paths[paths["path_id"] != paths["question_id"].map({"q1": 0, "q2": 1, "q3": 2})]
    with pytest.raises(ValueError, match="no question has all 4 paths"):
        complete_questions(staggered)


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


def test_question_votes_follow_rule():
    votes = question_votes(make_paths()).set_index("question_id")
    assert votes["voted_key"].tolist() == ["A", "D", "E"]
    assert votes["correct"].tolist() == [True, True, False]
    assert votes["tie"].tolist() == [True, False, True]
    assert votes["answered_paths"].tolist() == [4, 3, 4]


def test_question_votes_nll_columns():
    votes = question_votes(make_paths()).set_index("question_id")
    # NLL tie-break: q1 A-B tie -> B (min NLL 0.1); q2 has no tie -> D; q3 E-F tie -> F (0.5).
    assert votes["nll_key"].tolist() == ["B", "D", "F"]
    assert votes["nll_correct"].tolist() == [False, True, True]
    # Lowest-NLL path: q1 path 1 (B), q2 path 0 (no answer), q3 path 2 (F).
    assert votes["selected_correct"].tolist() == [False, False, True]


def test_question_votes_agree_with_full_prefix():
    paths = random_paths(80, 9, seed=4).sample(frac=0.9, random_state=0)
    votes = question_votes(paths)
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


def test_build_arrays_compacts_missing_paths():
    arrays = build_arrays(make_incomplete_paths())
    # q3 keeps path ids 2 and 3 (F, F), which move to slots 0 and 1.
    assert arrays.keys[2].tolist() == [0, 0, -1, -1]
    assert arrays.nfe[2].tolist() == [30, 40, 0, 0]
    assert arrays.num_paths.tolist() == [4, 4, 2]
    assert arrays.available[2].tolist() == [True, True, False, False]


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


def test_question_votes_equal_nll_tie():
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
    votes = question_votes(paths).iloc[0]
    # A and B tie 2-2 with equal lowest NLL 0.2; B's lowest-NLL path (1) precedes A's (3).
    assert votes["voted_key"] == "A"
    assert votes["nll_key"] == "B"
    assert votes["selected_correct"]


def messy_paths(num_questions: int, num_paths: int, seed: int) -> pd.DataFrame:
    """Build a random table with three keys (many ties), 20% unanswered and 15% absent paths."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(np.array(["A", "B", "C"], dtype=object), size=(num_questions, num_paths))
    keys[rng.random(keys.shape) < 0.2] = None
    nll = rng.choice([0.1, 0.2, 0.3, np.nan], size=keys.shape)
    paths = pd.DataFrame(
        {
            "question_id": np.repeat([f"q{i:02d}" for i in range(num_questions)], num_paths),
            "path_id": np.tile(np.arange(num_paths), num_questions),
            "answer_key": keys.ravel(),
            "correct": (keys == "A").ravel(),
            "nfe": 1,
            "nll": nll.ravel(),
        }
    )
    return paths[rng.random(len(paths)) >= 0.15].reset_index(drop=True)


def test_running_vote_matches_vote_keys():
    paths = messy_paths(num_questions=40, num_paths=6, seed=5)
    arrays = build_arrays(paths)
    by_question = {
        question: group.sort_values("path_id") for question, group in paths.groupby("question_id")
    }
    # Local key codes number each question's keys by first appearance in path order.
    names = {
        question: list(dict.fromkeys(group["answer_key"].dropna()))
        for question, group in by_question.items()
    }

    rng = np.random.default_rng(0)
    streams = 8
    # Each stream adds a question's available slots in a random order, then its empty slots.
    orders = np.empty((streams, len(arrays.question_ids), arrays.num_slots), dtype=np.int64)
    for stream in range(streams):
        for row, count in enumerate(arrays.num_paths):
            own = rng.permutation(count)
            orders[stream, row] = np.concatenate([own, np.arange(count, arrays.num_slots)])

    vote = RunningVote(arrays, streams)
    checked_ties = 0
    for step in range(arrays.num_slots):
        vote.add(orders[:, :, step])
        for stream in range(streams):
            for row, question in enumerate(arrays.question_ids):
                group = by_question[question]
                subset = sorted(orders[stream, row, : step + 1])
                subset = [slot for slot in subset if slot < arrays.num_paths[row]]
                keys = [None if pd.isna(key) else key for key in group["answer_key"].iloc[subset]]
                expected = vote_keys(keys, rule="first")
                code = vote.winner[stream, row]
                assert (names[question][code] if code >= 0 else None) == expected.key
                assert (vote.keys_at_top[stream, row] >= 2) == expected.tie
                expected_correct = expected.key == "A"
                assert arrays.key_correct[row, code] == expected_correct
                checked_ties += expected.tie

    # The three-key draws must exercise the tie rule, not only clear majorities.
    assert checked_ties > 50


def test_question_votes_match_vote_keys():
    paths = messy_paths(num_questions=60, num_paths=5, seed=9)
    votes = question_votes(paths).set_index("question_id")
    for question, group in paths.sort_values("path_id").groupby("question_id"):
        keys = [None if pd.isna(key) else key for key in group["answer_key"]]
        first = vote_keys(keys, rule="first")
        by_nll = vote_keys(keys, rule="nll", nlls=group["nll"].tolist())
        row = votes.loc[question]
        assert row["voted_key"] == first.key
        assert row["tie"] == first.tie
        assert row["correct"] == (first.key == "A")
        assert row["nll_key"] == by_nll.key
        assert row["nll_correct"] == (by_nll.key == "A")


def test_question_votes_treat_nan_nll_as_absent():
    paths = make_paths().assign(nll=np.nan)
    assert not has_nll(paths)
    votes = question_votes(paths)
    assert "selected_correct" not in votes.columns
    assert "nll_key" not in votes.columns
    assert votes["correct"].tolist() == [True, True, False]
