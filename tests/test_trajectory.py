"""Trajectory records: replay, compact dtypes, top-k alternatives, watched positions, storage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hexlab.decode import DecodeConfig, PathSpec, Trajectories, decode, decode_batches, replay
from hexlab.toy.problems import make_problems

G = 32
WATCH = (0, 17)


@pytest.fixture(scope="module")
def rows(tiny_lm) -> list:
    prompts = [
        tiny_lm.encode_prompt(p.question, prefill="<reasoning>") for p in make_problems(2, seed=7)
    ]
    specs = [
        PathSpec.uniform(8, G, steps=16),
        PathSpec.uniform(12, G, steps=16, temperature=0.9),
        PathSpec.from_sizes([4, 28], G, steps=16, remasking="random", seed=2),
    ]
    return [(prompt, spec) for prompt in prompts for spec in specs]


@pytest.fixture(scope="module")
def trajectories(tiny_lm, rows) -> Trajectories:
    return decode(tiny_lm, rows, G, DecodeConfig(batch_size=4, watch_positions=WATCH))


def test_replay_ends_with_final_tokens(trajectories, rows, tiny_lm):
    for row, (_, spec) in enumerate(rows):
        canvases = replay(trajectories, row)
        assert len(canvases) == spec.nfe + 1
        assert (canvases[0] == tiny_lm.mask_token_id).all()
        assert canvases[-1].tolist() == trajectories.tokens[row].tolist()
        for t, step in enumerate(spec.plan()):
            before, after = canvases[t], canvases[t + 1]
            newly = (before == tiny_lm.mask_token_id) & (after != tiny_lm.mask_token_id)
            assert newly.sum() == step.count
            assert newly[: step.start].sum() == newly[step.end :].sum() == 0
            # revealed tokens never change afterwards
            kept = before != tiny_lm.mask_token_id
            assert (after[kept] == before[kept]).all()


def test_records_use_compact_dtypes(trajectories):
    assert trajectories.tokens.dtype == np.int32
    assert trajectories.reveal_step.dtype == np.int16
    assert trajectories.confidence.dtype == np.float16
    assert trajectories.topk_ids.dtype == np.int32
    assert trajectories.topk_probs.dtype == np.float16
    assert trajectories.nfe.dtype == np.int16
    assert trajectories.watched.dtype == np.float16
    assert trajectories.topk_ids.shape == (6, G, 5)


def test_top_alternative_is_greedy_token(trajectories):
    greedy = [0, 3]  # rows of the b8 path, T = 0, low confidence
    for row in greedy:
        assert trajectories.tokens[row].tolist() == trajectories.topk_ids[row, :, 0].tolist()
        assert (trajectories.confidence[row] == trajectories.topk_probs[row, :, 0]).all()
    # alternatives come in decreasing probability everywhere
    assert (np.diff(trajectories.topk_probs.astype(np.float32), axis=-1) <= 0).all()


def test_watched_positions_have_one_distribution_per_step(trajectories, rows):
    for row, (_, spec) in enumerate(rows):
        distributions = trajectories.watched_distributions(row)
        assert distributions.shape[:2] == (spec.nfe, len(WATCH))
        # float16 probabilities of 152 tokens sum to 1 within float16 rounding
        np.testing.assert_allclose(distributions.astype(np.float64).sum(-1), 1.0, atol=5e-3)


def test_batched_parts_join_into_the_whole_run(tiny_lm, rows, trajectories):
    config = DecodeConfig(batch_size=4, watch_positions=WATCH)
    joined = Trajectories.concat(list(decode_batches(tiny_lm, rows, G, config)))
    assert joined.row_ids.tolist() == list(range(len(rows)))
    assert joined.tokens.tolist() == trajectories.tokens.tolist()
    for row in range(len(rows)):
        np.testing.assert_array_equal(
            joined.watched_distributions(row), trajectories.watched_distributions(row)
        )


def test_save_and_load_round_trip(trajectories, tmp_path):
    path = tmp_path / "trajectories.npz"
    trajectories.save(path)
    loaded = Trajectories.load(path)
    for field in dataclasses.fields(Trajectories):
        original, restored = getattr(trajectories, field.name), getattr(loaded, field.name)
        if isinstance(original, np.ndarray):
            np.testing.assert_array_equal(restored, original, err_msg=field.name)
        else:
            assert restored == original, field.name
    # loading selected rows keeps their order and their watched distributions
    subset = Trajectories.load(path, rows=[4, 1])
    assert subset.row_ids.tolist() == [4, 1]
    assert subset.specs == [trajectories.specs[4], trajectories.specs[1]]
    np.testing.assert_array_equal(
        subset.watched_distributions(4), trajectories.watched_distributions(4)
    )
    assert replay(subset, 1)[-1].tolist() == trajectories.tokens[1].tolist()


def test_unknown_row_raises(trajectories):
    with pytest.raises(KeyError, match=r"row 99 is not in these trajectories"):
        trajectories.index_of(99)
