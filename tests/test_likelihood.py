"""Likelihood baselines against direct per-row computation on a tiny random masked LM."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from hexlab.likelihood import (
    elbo_masks,
    elbo_nll,
    lowest_nll_index,
    one_step_nll,
    select_by_nll,
    vote_with_nll_tiebreak,
)
from hexlab.models import DiffusionLM, Profile

VOCAB = ["[UNK]", "[PAD]", "[MASK]", "<|endoftext|>", *[f"w{i}" for i in range(20)]]


@pytest.fixture(scope="module")
def lm():
    """A 1-layer random BERT; `DiffusionLM.logits` corrects its positions under left padding."""
    vocab = {token: index for index, token in enumerate(VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        eos_token="<|endoftext|>",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        # wider initial weights than BERT's 0.02 give peaked logits, so a padding or position
        # error moves the NLL by about 1 nat instead of 0.04
        initializer_range=0.3,
    )
    return DiffusionLM(BertForMaskedLM(config), tokenizer, Profile("tiny", "", "masked-lm"))


# prompts and answers of different lengths, so batches need left padding
PROMPTS = [[4, 5, 6], [7, 8, 9, 10, 11, 12], [13], [14, 15, 4, 5]]
ANSWERS = [[16, 17, 3], [18], [19, 20, 21, 22, 3], [5, 3]]


def direct_log_probs(lm, prompt, canvas_answer, answer):
    """log p(answer_i) at each answer position for one unpadded row, in float64."""
    input_ids = torch.tensor([prompt + canvas_answer])
    with torch.no_grad():
        logits = lm.model(input_ids=input_ids).logits[0].double()  # (L, V)
    log_probs = torch.log_softmax(logits[len(prompt) :], dim=-1)  # (n, V)
    return log_probs[torch.arange(len(answer)), torch.tensor(answer)].numpy()


def test_one_step_nll_matches_direct_computation(lm):
    expected = [
        -direct_log_probs(lm, p, [lm.mask_token_id] * len(a), a).mean()
        for p, a in zip(PROMPTS, ANSWERS)
    ]
    nlls = one_step_nll(lm, PROMPTS, ANSWERS, batch_size=4)
    assert nlls.dtype == np.float64
    np.testing.assert_allclose(nlls, expected, rtol=1e-5)


def test_one_step_nll_is_batch_invariant(lm):
    alone = one_step_nll(lm, PROMPTS, ANSWERS, batch_size=1)
    together = one_step_nll(lm, PROMPTS, ANSWERS, batch_size=4)
    reversed_order = one_step_nll(lm, PROMPTS[::-1], ANSWERS[::-1], batch_size=3)[::-1]
    np.testing.assert_allclose(together, alone, rtol=1e-5)
    np.testing.assert_allclose(reversed_order, alone, rtol=1e-5)


def test_elbo_masks_stratify_counts():
    masks = elbo_masks(length=4, samples=8, seed=3)
    # 8 samples over counts 1..4: each count appears 8 / 4 = 2 times
    assert masks.shape == (8, 4)
    assert sorted(masks.sum(axis=1).tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_elbo_masks_are_seeded():
    assert np.array_equal(elbo_masks(6, 16, seed=1), elbo_masks(6, 16, seed=1))
    assert not np.array_equal(elbo_masks(6, 16, seed=1), elbo_masks(6, 16, seed=2))


def test_elbo_nll_matches_direct_computation(lm):
    samples, seed = 6, 11
    expected = []
    for prompt, answer in zip(PROMPTS, ANSWERS):
        losses = []
        for mask in elbo_masks(len(answer), samples, seed):
            canvas = [lm.mask_token_id if hide else token for token, hide in zip(answer, mask)]
            log_probs = direct_log_probs(lm, prompt, canvas, answer)
            # loss = (n / l) * sum of masked -log p, with l masked of n positions
            losses.append(-log_probs[mask].sum() * len(answer) / mask.sum())
        expected.append(np.mean(losses))
    nlls = elbo_nll(lm, PROMPTS, ANSWERS, samples=samples, seed=seed, batch_size=5)
    np.testing.assert_allclose(nlls, expected, rtol=1e-5)


def test_elbo_nll_is_batch_invariant(lm):
    alone = elbo_nll(lm, PROMPTS, ANSWERS, samples=4, batch_size=1)
    together = elbo_nll(lm, PROMPTS, ANSWERS, samples=4, batch_size=7)
    np.testing.assert_allclose(together, alone, rtol=1e-5)


def test_elbo_of_one_token_equals_one_step_nll(lm):
    # n = 1: every sample masks l = 1 token, so loss = (1 / 1) * -log p = the one-step NLL
    prompts, answers = [[4, 5], [6]], [[7], [8]]
    np.testing.assert_allclose(
        elbo_nll(lm, prompts, answers, samples=3), one_step_nll(lm, prompts, answers), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("prompts", "answers", "message"),
    [
        ([[4]], [[5], [6]], "1 prompts for 2 answers"),
        ([[4]], [[]], "answer 0 is empty"),
        ([[4]], [[5, 2]], "still contains the mask token"),
    ],
)
def test_invalid_rows_raise(lm, prompts, answers, message):
    with pytest.raises(ValueError, match=message):
        one_step_nll(lm, prompts, answers)
    with pytest.raises(ValueError, match=message):
        elbo_nll(lm, prompts, answers, samples=2)


def test_selection_takes_lowest_nll_path():
    keys = ["18", None, "20"]
    assert lowest_nll_index([2.0, float("nan"), 1.5]) == 2
    assert select_by_nll(keys, [2.0, 0.5, 1.5]) is None  # the best path has no answer
    assert select_by_nll(keys, [1.0, 3.0, 1.5]) == "18"


def test_vote_with_nll_tiebreak_uses_voting_rule():
    result = vote_with_nll_tiebreak(["18", "20"], [2.0, 1.0])
    assert result.key == "20"
    assert result.tie is True


def test_one_step_nll_runs_one_pass_per_prompt(tiny_lm):
    # 3 paths each for 2 prompts share 2 fully masked canvases: one forward row per prompt
    prompts = [[5, 6, 7]] * 3 + [[8, 9]] * 3
    answers = [[10, 11, 12, 13], [14, 15, 16, 17], [10, 10, 10, 10]] * 2
    calls = []
    original = tiny_lm.logits

    def counting_logits(input_ids, attention_mask=None):
        calls.append(input_ids.shape[0])
        return original(input_ids, attention_mask)

    tiny_lm.logits = counting_logits
    try:
        shared = one_step_nll(tiny_lm, prompts, answers, batch_size=8)
    finally:
        del tiny_lm.logits
    assert calls == [2]
    separate = [one_step_nll(tiny_lm, [p], [a])[0] for p, a in zip(prompts, answers)]
    np.testing.assert_allclose(shared, separate, rtol=1e-5)
