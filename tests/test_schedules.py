"""Path schedules: step split, transfer counts, plans, labels and validation."""

from __future__ import annotations

import itertools
import math

import pytest

from hexlab.decode import PathSpec, Step, split_steps, transfer_counts


def test_transfer_counts_divide_evenly():
    # 8 positions over 4 steps: 8 // 4 = 2 per step, 8 % 4 = 0 extra
    assert transfer_counts(8, 4) == [2, 2, 2, 2]


def test_transfer_counts_give_remainder_to_first_steps():
    # 10 positions over 4 steps: 10 // 4 = 2 each, 10 % 4 = 2 so the first two steps reveal 3
    assert transfer_counts(10, 4) == [3, 3, 2, 2]
    # 7 over 3: 7 // 3 = 2, 7 % 3 = 1 -> [3, 2, 2]
    assert transfer_counts(7, 3) == [3, 2, 2]


def test_transfer_counts_with_more_steps_than_positions():
    # 3 over 5: 3 // 5 = 0 each, 3 % 5 = 3 so steps 0..2 reveal one and steps 3, 4 nothing
    assert transfer_counts(3, 5) == [1, 1, 1, 0, 0]


def test_split_steps_evenly_across_blocks():
    # 16 steps over 4 blocks: 4 each; over 3 blocks: 16 // 3 = 5, 16 % 3 = 1 -> [6, 5, 5]
    assert split_steps(16, 4) == [4, 4, 4, 4]
    assert split_steps(16, 3) == [6, 5, 5]


def test_uniform_blocks_that_divide_the_window():
    spec = PathSpec.uniform(8, 32, steps=16)
    assert spec.block_sizes == (8, 8, 8, 8)
    # 16 steps / 4 blocks = 4 steps per block; 8 positions / 4 steps = 2 tokens per step
    assert spec.plan()[:4] == [Step(0, 8, 2)] * 4
    assert [step.count for step in spec.plan()] == [2] * 16
    assert spec.nfe == 16


def test_uniform_blocks_with_a_shorter_last_block():
    spec = PathSpec.uniform(12, 32, steps=16)
    # 32 = 12 + 12 + 8: the remainder is a real, shorter block, not a masked tail
    assert spec.block_sizes == (12, 12, 8)
    # steps 16 over 3 blocks -> [6, 5, 5]
    # block 0: 12 over 6 -> 2 each; block 1: 12 over 5 -> 12 // 5 = 2, 12 % 5 = 2 -> [3, 3, 2, 2, 2]
    # block 2: 8 over 5 -> 8 // 5 = 1, 8 % 5 = 3 -> [2, 2, 2, 1, 1]
    counts = [step.count for step in spec.plan()]
    assert counts == [2] * 6 + [3, 3, 2, 2, 2] + [2, 2, 2, 1, 1]
    assert [step.start for step in spec.plan()] == [0] * 6 + [12] * 5 + [24] * 5


def test_two_block_schedule_skips_steps_that_reveal_nothing():
    spec = PathSpec.from_sizes([4, 28], 32, steps=16)
    # 8 steps per block. Block 0: 4 over 8 -> [1, 1, 1, 1, 0, 0, 0, 0], four empty steps dropped.
    # Block 1: 28 over 8 -> 28 // 8 = 3, 28 % 8 = 4 -> [4, 4, 4, 4, 3, 3, 3, 3]
    counts = [step.count for step in spec.plan()]
    assert counts == [1, 1, 1, 1, 4, 4, 4, 4, 3, 3, 3, 3]
    assert spec.nfe == 12  # min(4, 8) + min(28, 8)


def test_uneven_step_split_over_blocks():
    spec = PathSpec.uniform(8, 32, steps=5)
    # 5 steps over 4 blocks: 5 // 4 = 1, 5 % 4 = 1 -> [2, 1, 1, 1]; block 0 reveals 4 + 4
    assert spec.steps_per_block() == [2, 1, 1, 1]
    assert [step.count for step in spec.plan()] == [4, 4, 8, 8, 8]


@pytest.mark.parametrize(
    "sizes,steps",
    [((8, 8, 8, 8), 16), ((12, 12, 8), 7), ((4, 28), 64), ((1, 2, 3, 26), 9), ((32,), 16)],
)
def test_plan_reveals_every_position_once(sizes, steps):
    spec = PathSpec.from_sizes(sizes, steps=steps)
    starts = [0, *itertools.accumulate(sizes)][:-1]
    for start, size in zip(starts, sizes):
        revealed = sum(step.count for step in spec.plan() if step.start == start)
        assert revealed == size
    assert all(step.count > 0 for step in spec.plan())


def test_tokens_per_step_sets_the_step_count():
    assert PathSpec.uniform(8, 32, tokens_per_step=2).steps == 16  # 32 / 2
    assert PathSpec.uniform(8, 32, tokens_per_step=3).steps == math.ceil(32 / 3)  # 11


def test_labels_name_what_varies():
    assert PathSpec.uniform(8, 32, steps=16).label == "b8"
    assert PathSpec.uniform(8, 32, steps=16, temperature=0.9, seed=3).label == "b8/s3/T0.9"
    assert PathSpec.uniform(12, 32, steps=16).label == "b12"
    assert PathSpec.from_sizes([4, 28], steps=16).label == "b4+28"
    assert PathSpec.uniform(8, 32, steps=32).label == "b8/steps32"
    assert PathSpec.uniform(8, 32, steps=16, remasking="top_k_margin").label == "b8/margin"
    assert PathSpec.uniform(8, 32, steps=16, remasking="random", seed=2).label == "b8/s2/random"
    assert PathSpec.uniform(8, 32, steps=16, eos="forbid").label == "b8/eos-forbid"
    # the seed changes nothing at T = 0 with a deterministic rule, so it is left out
    assert PathSpec.uniform(8, 32, steps=16, seed=7).label == "b8"


def test_path_spec_is_frozen_and_hashable():
    spec = PathSpec.from_sizes([8, 24], steps=16)
    assert spec.block_sizes == (8, 24)
    assert {spec, PathSpec.from_sizes((8, 24), steps=16)} == {spec}
    with pytest.raises(AttributeError):
        spec.steps = 3


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: PathSpec.from_sizes([8, 8], 32, steps=16), r"sum to 16, not to gen_length 32"),
        (lambda: PathSpec((8, 0, 24), steps=16), r"invalid block size 0"),
        (lambda: PathSpec((40, -8), steps=16), r"invalid block size -8"),
        (lambda: PathSpec((), steps=16), r"block_sizes is empty"),
        (lambda: PathSpec.uniform(2, 32, steps=8), r"steps=8 is fewer than the 16 blocks"),
        (
            lambda: PathSpec.uniform(8, 32, steps=16, remasking="lowest"),
            r"unknown remasking 'lowest'",
        ),
        (lambda: PathSpec.uniform(8, 32, steps=16, temperature=-0.5), r"invalid temperature -0.5"),
        (
            lambda: PathSpec.uniform(8, 32, steps=16, temperature=float("nan")),
            r"invalid temperature nan",
        ),
        (lambda: PathSpec.uniform(8, 32, steps=16, eos="drop"), r"unknown eos option 'drop'"),
        (lambda: PathSpec.uniform(8, 32), r"exactly one of steps"),
        (lambda: PathSpec.uniform(8, 32, steps=16, tokens_per_step=2), r"exactly one of steps"),
        (lambda: PathSpec.uniform(64, 32, steps=16), r"invalid block size 64"),
        (lambda: PathSpec.uniform(8, 32, tokens_per_step=0), r"invalid tokens_per_step 0"),
        (lambda: transfer_counts(4, 0), r"4 positions over 0 steps"),
    ],
)
def test_invalid_schedules_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()
