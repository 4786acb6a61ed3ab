"""The one-row reference decoder: plan arithmetic, first-step choices and seeds."""

from __future__ import annotations

import pytest
import torch

from hexlab.decode import PathSpec, reference_decode
from hexlab.toy.problems import make_problems

G = 32


@pytest.fixture(scope="module")
def prompt(toy_tokenizer) -> list[int]:
    question = make_problems(1, seed=5)[0].question
    text = toy_tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return toy_tokenizer(text + "<reasoning>", add_special_tokens=False)["input_ids"]


def test_reference_reveals_the_planned_counts_block_by_block(toy_lm, prompt):
    spec = PathSpec.uniform(12, G, steps=16)  # blocks 12, 12, 8
    result = reference_decode(toy_lm, prompt, spec)
    assert result.nfe == spec.nfe == 16
    assert toy_lm.mask_token_id not in result.tokens.tolist()
    # every step reveals exactly its planned count, inside its own block
    for t, step in enumerate(spec.plan()):
        revealed = (result.reveal_step == t).nonzero()[0]
        assert len(revealed) == step.count
        assert all(step.start <= position < step.end for position in revealed)


@pytest.mark.parametrize("rule", ["low_confidence", "top_k_margin", "entropy"])
def test_reference_first_step_reveals_the_best_scores(tiny_lm, prompt, rule):
    spec = PathSpec.uniform(8, G, steps=8, remasking=rule)  # first step reveals 8 // 2 = 4
    result = reference_decode(tiny_lm, prompt, spec)
    canvas = torch.tensor([prompt + [tiny_lm.mask_token_id] * G])
    probs = tiny_lm.logits(canvas)[0, len(prompt) : len(prompt) + 8].double().softmax(-1)  # (8, V)
    top2 = probs.topk(2, dim=-1).values
    scores = {
        "low_confidence": top2[:, 0],  # probability of the argmax proposal
        "top_k_margin": top2[:, 0] - top2[:, 1],
        "entropy": (probs * probs.log()).sum(-1),  # negative entropy
    }[rule]
    expected = sorted(scores.topk(4).indices.tolist())
    assert sorted((result.reveal_step == 0).nonzero()[0].tolist()) == expected


def test_reference_seed_matters_only_when_sampling(tiny_lm, prompt):
    greedy = [
        reference_decode(tiny_lm, prompt, PathSpec.uniform(8, G, steps=16, seed=s)) for s in (0, 1)
    ]
    assert greedy[0].tokens.tolist() == greedy[1].tokens.tolist()
    sampled = [
        reference_decode(tiny_lm, prompt, PathSpec.uniform(8, G, steps=16, temperature=0.9, seed=s))
        for s in (0, 1, 0)
    ]
    assert sampled[0].tokens.tolist() != sampled[1].tokens.tolist()
    assert sampled[0].tokens.tolist() == sampled[2].tokens.tolist()


def test_reference_skips_steps_that_reveal_nothing(tiny_lm, prompt):
    # a 4-position block with 8 steps reveals one token in 4 steps and nothing in the other 4
    spec = PathSpec.from_sizes([4, 28], G, steps=16)
    result = reference_decode(tiny_lm, prompt, spec)
    assert result.nfe == 12
    assert sorted(result.reveal_step[:4].tolist()) == [0, 1, 2, 3]
    assert result.reveal_step[4:].min() == 4
