"""Majority vote, tie rules and tie rate."""

import json
import math
from pathlib import Path

import pytest

from hexlab.answers import TIE_RULES, tie_rate, vote, vote_keys, vote_outputs

CASES = Path(__file__).parent / "cases" / "vote_cases.jsonl"
VOTE_CASES = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("case", VOTE_CASES, ids=[case["kind"] for case in VOTE_CASES])
def test_vote_case_returns_expected_answer_and_tie(case):
    voted, tie = vote(case["task"], case["paths"])
    assert voted == case["voted"]
    assert tie is case["tie"]


def test_paths_without_answer_do_not_vote():
    result = vote_keys([None, "7", None, "7", "8"])
    assert result.key == "7"
    assert result.counts == {"7": 2, "8": 1}
    assert result.n_voting == 3  # 5 paths, 2 without an answer
    assert result.tie is False
    assert result.first_index == 1


def test_no_answers_give_none_without_error():
    result = vote_keys([None, None])
    assert result.key is None
    assert result.tie is False
    assert result.n_voting == 0


def test_first_rule_picks_earliest_tied_key():
    # "b" and "a" both have 2 votes; "b" appears first (path 0)
    assert vote_keys(["b", "a", "a", "b", "c"], rule="first").key == "b"


def test_nll_rule_picks_lowest_nll_among_tied_paths():
    keys = ["a", "b", "c", "b", "a"]
    nlls = [3.0, 2.0, 0.1, 5.0, 1.0]
    # tied keys a and b: best a path = 1.0, best b path = 2.0, so "a" wins. Path 2 ("c") has
    # the lowest NLL overall but only one vote, so it takes no part in the tie.
    result = vote_keys(keys, rule="nll", nlls=nlls)
    assert result.key == "a"
    assert result.tie is True


def test_nll_rule_treats_nan_as_worst():
    assert vote_keys(["a", "b"], rule="nll", nlls=[float("nan"), 4.0]).key == "b"


def test_nll_rule_ignores_nll_without_tie():
    assert vote_keys(["a", "a", "b"], rule="nll", nlls=[9.0, 9.0, 0.0]).key == "a"


def test_random_rule_reaches_every_tied_key():
    keys = ["a", "b", "c"]
    picks = {vote_keys(keys, rule="random", seed=seed).key for seed in range(40)}
    assert picks == {"a", "b", "c"}


def test_random_rule_repeats_with_seed():
    keys = ["a", "b", "c"]
    first = [vote_keys(keys, rule="random", seed=seed).key for seed in range(10)]
    second = [vote_keys(keys, rule="random", seed=seed).key for seed in range(10)]
    assert first == second


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rule": "last"}, "unknown tie rule"),
        ({"rule": "nll"}, "needs one NLL per path"),
        ({"rule": "first", "nlls": [1.0]}, "got 1 NLLs for 2 paths"),
    ],
)
def test_invalid_vote_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vote_keys(["a", "b"], **kwargs)


def test_tie_rules_are_listed():
    assert TIE_RULES == ("first", "nll", "random")


def test_tie_rate_is_share_of_tied_questions():
    # 1 tie in 4 questions: 1 / 4 = 0.25
    assert tie_rate([False, True, False, False]) == 0.25
    assert math.isnan(tie_rate([]))


def test_vote_displays_first_form_of_winning_key():
    # "1,000" and "1000" share key "1000" and outvote "999"; the display is the key's text
    voted, tie = vote("gsm8k", ["\\boxed{999}", "\\boxed{1,000}", "\\boxed{1000}"])
    assert voted == "1000"
    assert tie is False


def test_vote_outputs_returns_winning_answer_and_counts():
    winner, result = vote_outputs("math", ["\\boxed{0.5}", "\\boxed{\\frac12}", "\\boxed{3}"])
    assert winner.text == "0.5"
    assert result.counts == {"1/2": 2, "3": 1}


def test_vote_with_nll_rule_through_public_vote():
    voted, tie = vote("mc", ["\\boxed{A}", "\\boxed{B}"], rule="nll", nlls=[2.0, 1.0])
    assert voted == "B"
    assert tie is True
