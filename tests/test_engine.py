"""The batched decoder: exactness against the reference, batch invariance, seeds, EOS options."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hexlab.decode import DecodeConfig, PathSpec, decode, decode_batches, reference_decode
from hexlab.decode.sampling import sample_proposals, select_reveals
from hexlab.toy.problems import make_problems

G = 32  # the toy model's answer window
ROOT = Path(__file__).resolve().parents[1]

SCHEDULES = [
    dict(block_size=2, steps=16),  # 16 blocks, one step each
    dict(block_size=8, steps=8),  # 2 steps per block, 4 tokens per step
    dict(block_size=12, steps=6),  # blocks 12, 12, 8: a shorter last block
    dict(block_size=32, steps=4),  # one block
    dict(block_size=8, steps=5),  # 5 steps over 4 blocks: [2, 1, 1, 1]
    dict(sizes=[2, 30], steps=8),  # two blocks; 2 positions over 4 steps leave 2 empty steps
]
RULES = ["low_confidence", "top_k_margin", "random", "entropy"]


def make_spec(schedule: dict, **options) -> PathSpec:
    if "sizes" in schedule:
        return PathSpec.from_sizes(schedule["sizes"], G, steps=schedule["steps"], **options)
    return PathSpec.uniform(schedule["block_size"], G, steps=schedule["steps"], **options)


def toy_prompts(lm, count: int) -> list[list[int]]:
    """Prompts of `count` distinct toy questions spread over the prompt lengths, shortest first."""
    questions = [p.question for p in make_problems(8 * count, seed=3)]
    prompts = sorted((lm.encode_prompt(q, prefill="<reasoning>") for q in questions), key=len)
    spread = [prompts[i * (len(prompts) - 1) // max(count - 1, 1)] for i in range(count)]
    assert count == 1 or len(spread[0]) < len(spread[-1]), "need several prompt lengths"
    return spread


def every_schedule_and_rule() -> list[PathSpec]:
    specs = [make_spec(s, remasking=r, seed=4) for s in SCHEDULES for r in RULES]
    specs += [make_spec(SCHEDULES[1], eos="forbid"), make_spec(SCHEDULES[1], eos="no_confidence")]
    return specs


@pytest.mark.parametrize("model", ["toy_lm", "tiny_lm"])
def test_engine_matches_reference_at_temperature_zero(model, request):
    lm = request.getfixturevalue(model)
    prompts = toy_prompts(lm, 2)
    specs = every_schedule_and_rule()
    # alternate the two prompt lengths so most rows are left-padded in the batch
    rows = [(prompts[i % 2], spec) for i, spec in enumerate(specs)]
    trajectories = decode(lm, rows, G, DecodeConfig(batch_size=len(rows)))
    for i, (prompt, spec) in enumerate(rows):
        expected = reference_decode(lm, prompt, spec)
        assert trajectories.tokens[i].tolist() == expected.tokens.tolist(), spec.label
        assert trajectories.reveal_step[i].tolist() == expected.reveal_step.tolist(), spec.label
        assert trajectories.nfe[i] == expected.nfe == spec.nfe, spec.label


def batch_around(lm, target: PathSpec) -> tuple[list, int]:
    """Eight rows of several prompt lengths and schedules, with the target row (shortest) at 3."""
    prompts = toy_prompts(lm, 8)
    neighbours = [
        make_spec(
            SCHEDULES[i % len(SCHEDULES)], remasking=RULES[i % 4], temperature=0.9 * (i % 2), seed=i
        )
        for i in range(8)
    ]
    rows = [(prompts[i], neighbours[i]) for i in range(8)]
    rows[3] = (prompts[0], target)
    return rows, 3


@pytest.mark.parametrize(
    "temperature,rule", [(0.0, "low_confidence"), (0.9, "low_confidence"), (0.9, "random")]
)
def test_row_is_batch_invariant(toy_lm, temperature, rule):
    target = PathSpec.uniform(4, G, steps=16, remasking=rule, temperature=temperature, seed=11)
    rows, index = batch_around(toy_lm, target)
    in_batch = decode(toy_lm, rows, G, DecodeConfig(batch_size=8))
    alone = decode(toy_lm, [rows[index]], G)
    # the target prompt is the shortest of the 8, so it is left-padded in the batch
    assert in_batch.prompt_lengths[index] < in_batch.prompt_lengths.max()
    assert in_batch.tokens[index].tolist() == alone.tokens[0].tolist()
    assert in_batch.reveal_step[index].tolist() == alone.reveal_step[0].tolist()
    np.testing.assert_allclose(in_batch.confidence[index], alone.confidence[0], atol=1e-3)


def test_same_seed_repeats_and_other_seeds_differ(tiny_lm):
    prompt = toy_prompts(tiny_lm, 1)[0]
    sampled = [PathSpec.uniform(8, G, steps=16, temperature=0.9, seed=s) for s in range(5)]
    rows = [(prompt, spec) for spec in sampled] + [(prompt, sampled[2])]
    trajectories = decode(tiny_lm, rows, G, DecodeConfig(batch_size=3))
    # row 5 repeats row 2's seed in another batch (batches of 3: rows 0-2 and 3-5)
    assert trajectories.tokens[5].tolist() == trajectories.tokens[2].tolist()
    distinct = {tuple(trajectories.tokens[i]) for i in range(5)}
    assert len(distinct) == 5
    # at T = 0 with confidence remasking the seed changes nothing
    greedy = [(prompt, PathSpec.uniform(8, G, steps=16, seed=s)) for s in range(3)]
    tokens = decode(tiny_lm, greedy, G).tokens
    assert len({tuple(row) for row in tokens}) == 1


def test_nfe_counts_the_forward_passes_each_row_took(tiny_lm):
    prompt = toy_prompts(tiny_lm, 1)[0]
    # 16 steps of 2 tokens, and a two-block path whose 4-position block wastes 4 of its 8 steps
    specs = [PathSpec.uniform(8, G, steps=16), PathSpec.from_sizes([4, 28], G, steps=16)]
    trajectories = decode(tiny_lm, [(prompt, spec) for spec in specs], G)
    assert trajectories.nfe.tolist() == [16, 12]
    # both rows share the first 12 forward passes, then the first row runs 4 more alone
    assert trajectories.stats.forward_calls == 16
    assert trajectories.stats.row_steps == 28


def test_batches_are_yielded_in_row_order(tiny_lm):
    prompts = toy_prompts(tiny_lm, 3)
    rows = [(prompts[i % 3], PathSpec.uniform(2 ** (i % 4 + 1), G, steps=16)) for i in range(7)]
    seen = []
    config = DecodeConfig(batch_size=3, progress=lambda done, total: seen.append((done, total)))
    parts = list(decode_batches(tiny_lm, rows, G, config))
    assert [part.row_ids.tolist() for part in parts] == [[0, 1, 2], [3, 4, 5], [6]]
    assert seen == [(3, 7), (6, 7), (7, 7)]
    whole = decode(tiny_lm, rows, G, DecodeConfig(batch_size=7))
    joined = np.concatenate([part.tokens for part in parts])
    assert joined.tolist() == whole.tokens.tolist()


def test_invalid_rows_raise_before_decoding(tiny_lm):
    prompt = toy_prompts(tiny_lm, 1)[0]
    spec = PathSpec.uniform(8, G, steps=16)
    too_long = [tiny_lm.eos_token_id] * (tiny_lm.max_length - G + 1)  # one over max_length
    with pytest.raises(ValueError, match=rf"plus gen_length {G} is .* above the model's max_len"):
        decode_batches(tiny_lm, [(prompt, spec), (too_long, spec)], G)
    with pytest.raises(ValueError, match=r"summing to 32, not gen_length 64"):
        decode(tiny_lm, [(prompt, spec)], 64)
    with pytest.raises(ValueError, match=r"watch position 32 is outside"):
        decode(tiny_lm, [(prompt, spec)], G, DecodeConfig(watch_positions=(32,)))
    with pytest.raises(ValueError, match=r"top_k 1000 exceeds the vocabulary size"):
        decode(tiny_lm, [(prompt, spec)], G, DecodeConfig(top_k=1000))
    with pytest.raises(ValueError, match=r"invalid batch_size 0"):
        DecodeConfig(batch_size=0)


def test_gumbel_sampler_matches_softmax_frequencies():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    temperature = 0.7
    generator = torch.Generator().manual_seed(0)
    draws = 20_000
    samples = sample_proposals(logits.expand(draws, -1), temperature, generator)
    observed = torch.bincount(samples, minlength=5).double()
    # chi-square with 5 - 1 = 4 degrees of freedom: the 0.1% critical value is 18.47
    expected = torch.softmax(logits.double() / temperature, dim=0) * draws
    assert float(((observed - expected) ** 2 / expected).sum()) < 18.47
    # the same counts reject the untempered distribution, so the check has power
    untempered = torch.softmax(logits.double(), dim=0) * draws
    assert float(((observed - untempered) ** 2 / untempered).sum()) > 18.47
    # T = 0 is the argmax and draws nothing
    assert sample_proposals(logits[None], 0.0).tolist() == [0]


def test_reveal_choice_prefers_high_scores_then_leftmost():
    scores = torch.tensor(
        [[0.2, 0.9, 0.9, float("-inf")], [float("-inf"), float("-inf"), 0.5, 0.0]],
        dtype=torch.float64,
    )
    valid = torch.tensor([[True, True, True, True], [True, True, False, False]])
    reveal = select_reveals(scores, valid, torch.tensor([2, 1]))
    # row 0: the two 0.9 scores; row 1: slot 2 scores higher but is padding, so the leftmost -inf
    assert reveal.tolist() == [[False, True, True, False], [True, False, False, False]]


class PositionTableLM:
    """A stand-in model whose logits depend only on the answer position, from a (G, V) table."""

    def __init__(self, tokenizer, table: torch.Tensor):
        self.tokenizer = tokenizer
        self.table = table  # (G, V)
        self.mask_token_id = tokenizer.mask_token_id
        self.eos_token_id = tokenizer.eos_token_id
        self.eot_token_id = tokenizer.convert_tokens_to_ids("<|eot_id|>")
        self.stop_token_ids = [self.eos_token_id, self.eot_token_id]
        self.max_length = None
        self.device = torch.device("cpu")
        self.vocab_size = table.shape[1]

    def logits(self, input_ids, attention_mask=None):
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.vocab_size)
        logits[:, length - len(self.table) :] = self.table  # the canvas ends with the answer window
        return logits


@pytest.fixture
def stop_lm(toy_tokenizer) -> PositionTableLM:
    """Stop tokens are the argmax at even positions (p = 0.5), digits at odd ones (p = 0.12)."""
    table = torch.zeros(G, len(toy_tokenizer))
    eot = toy_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    digit = toy_tokenizer.convert_tokens_to_ids("5")
    for position in range(G):
        # e^5 / (e^5 + 151) = 0.50 for the stop token; e^3 / (e^3 + 151) = 0.12 for the digit
        if position % 2 == 0:
            table[position, eot if position % 4 == 2 else toy_tokenizer.eos_token_id] = 5.0
        else:
            table[position, digit] = 3.0
    return PositionTableLM(toy_tokenizer, table)


def test_forbid_removes_end_of_text(stop_lm):
    prompt = [stop_lm.tokenizer.bos_token_id]
    plain = PathSpec.uniform(8, G, steps=16)
    forbid = PathSpec.uniform(8, G, steps=16, eos="forbid")
    trajectories = decode(stop_lm, [(prompt, plain), (prompt, forbid)], G)
    eos = stop_lm.eos_token_id
    assert (trajectories.tokens[0] == eos).sum() == 8  # positions 0, 4, 8, ...
    assert (trajectories.tokens[1] == eos).sum() == 0
    for i, spec in enumerate([plain, forbid]):
        expected = reference_decode(stop_lm, prompt, spec)
        assert trajectories.tokens[i].tolist() == expected.tokens.tolist()


def test_no_confidence_reveals_stop_tokens_last(stop_lm):
    prompt = [stop_lm.tokenizer.bos_token_id]
    plain = PathSpec.uniform(8, G, steps=16)
    demoted = PathSpec.uniform(8, G, steps=16, eos="no_confidence")
    trajectories = decode(stop_lm, [(prompt, plain), (prompt, demoted)], G)
    is_stop = np.isin(trajectories.tokens, stop_lm.stop_token_ids)
    for block in range(0, G, 8):
        steps = trajectories.reveal_step[:, block : block + 8]
        stop = is_stop[:, block : block + 8]
        # confident stop tokens go first without the option, and after every digit with it
        assert steps[0][stop[0]].max() < steps[0][~stop[0]].min()
        assert steps[1][~stop[1]].max() < steps[1][stop[1]].min()
    expected = reference_decode(stop_lm, prompt, demoted)
    assert trajectories.tokens[1].tolist() == expected.tokens.tolist()


def test_no_confidence_demotes_sampled_tokens(stop_lm):
    prompt = [stop_lm.tokenizer.bos_token_id]
    spec = PathSpec.uniform(8, G, steps=16, temperature=1.0, seed=3, eos="no_confidence")
    trajectories = decode(stop_lm, [(prompt, spec)], G)
    is_stop = np.isin(trajectories.tokens[0], stop_lm.stop_token_ids)
    score = trajectories.score[0].astype(np.float64)
    # sampling gives both kinds at the even positions (stop token argmax, p = 0.5)
    assert 0 < is_stop[::2].sum() < G // 2
    # each revealed token was ranked by its own sampled proposal: stop tokens at -inf, others not
    assert np.all(np.isneginf(score[is_stop]))
    assert np.all(np.isfinite(score[~is_stop]))


def test_gpu_benchmark_dry_run_finishes():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"gpu: speedup \d+\.\dx, forward share \d+%, step memory ratio \d+\.\dx", last_line
    ), last_line


def test_mask_token_is_never_proposed(tiny_lm, toy_tokenizer):
    # a random model gives the mask token about 1/V of the mass, so over 8 rows x 32 positions at
    # T = 5 (a nearly flat distribution) it would be sampled somewhere unless it is excluded
    prompt = tiny_lm.encode_prompt("Mia has 3 pens.", prefill="<reasoning>")
    rows = [(prompt, PathSpec.uniform(32, 32, steps=16, temperature=5.0, seed=s)) for s in range(8)]
    result = decode(tiny_lm, rows, 32)
    assert not (result.tokens == tiny_lm.mask_token_id).any()
