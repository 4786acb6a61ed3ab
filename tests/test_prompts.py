"""Prompt templates and their encoding through a chat template."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from hexlab.datasets import Example
from hexlab.models import DiffusionLM, Profile
from hexlab.prompts import (
    TEMPLATES,
    TOY_TEMPLATE,
    build_prompt,
    render_user_message,
)

SPECIAL = ["[UNK]", "[PAD]", "[MASK]", "<|endoftext|>", "<|eot_id|>", "<|user|>", "<|assistant|>"]
WORDS = ["<reasoning>", "what", "is", "2+3", "?", "Q:"]


@pytest.fixture(scope="module")
def lm():
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        eos_token="<|endoftext|>",
        additional_special_tokens=["<|eot_id|>", "<|user|>", "<|assistant|>", "<reasoning>"],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|user|> {{ m['content'] }} <|eot_id|> {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    profile = Profile("tiny", "", "masked-lm", eot_token="<|eot_id|>")
    return DiffusionLM(BertForMaskedLM(config), tokenizer, profile)


GSM8K = Example("g0", "gsm8k", "what is 2+3 ?", "5")
CHOICE = Example("c0", "mc", "Sky?\nOptions:\nA. blue\nB. red\nChoose ONE letter.", "A")
TOY = Example("t0", "toy", "2+3", "5")


def test_math_template_matches_hex_prompt_text():
    expected = (
        "You are a math expert. You will be given a question to solve. Solve it step by step. "
        "Wrap the final answer in a \\boxed{}. \n"
        "Respond in the following format:\n"
        "<reasoning>\nYour reasoning here\n</reasoning>\n"
        "<answer>\n\\boxed{...}\n</answer>\n"
        "\n"
        "what is 2+3 ?"
    )
    assert render_user_message(GSM8K) == expected
    assert TEMPLATES["math"] == TEMPLATES["gsm8k"]


def test_choice_template_asks_for_one_boxed_letter():
    message = render_user_message(CHOICE)
    assert "ONE" in message
    assert "\\boxed{}" in message
    assert message.endswith("\n\n" + CHOICE.question)


def test_toy_template_is_bare_question():
    assert TOY_TEMPLATE == "{question}"
    assert render_user_message(TOY) == "2+3"


def test_custom_template_keeps_latex_braces():
    message = render_user_message(GSM8K, template="Q: {question} Put it in \\boxed{}.")
    assert message == "Q: what is 2+3 ? Put it in \\boxed{}."


def test_named_template_overrides_task_template():
    assert render_user_message(TOY, template="gsm8k").startswith("You are a math expert.")


def test_template_without_placeholder_raises():
    with pytest.raises(ValueError, match="contain {question}"):
        render_user_message(GSM8K, template="Solve it.")


def test_build_prompt_applies_chat_template_and_prefill(lm):
    ids = build_prompt(GSM8K, lm, template="Q: {question}")
    tokens = lm.tokenizer.convert_ids_to_tokens(ids)
    # chat template: <|user|> message <|eot_id|> <|assistant|>, then the prefill
    assert tokens == [
        "<|user|>",
        "Q:",
        "what",
        "is",
        "2+3",
        "?",
        "<|eot_id|>",
        "<|assistant|>",
        "<reasoning>",
    ]


def test_build_prompt_matches_encode_prompt(lm):
    expected = lm.encode_prompt(render_user_message(GSM8K), prefill="<reasoning>")
    assert build_prompt(GSM8K, lm) == expected


def test_toy_prompt_keeps_reasoning_prefill(lm):
    tokens = lm.tokenizer.convert_ids_to_tokens(build_prompt(TOY, lm))
    assert tokens == ["<|user|>", "2+3", "<|eot_id|>", "<|assistant|>", "<reasoning>"]


def test_prefill_can_be_replaced(lm):
    tokens = lm.tokenizer.convert_ids_to_tokens(build_prompt(TOY, lm, prefill=""))
    assert tokens == ["<|user|>", "2+3", "<|eot_id|>", "<|assistant|>"]


def test_toy_prompt_matches_toy_training_layout(tiny_lm):
    # the toy trainer encodes chat_template(question) + "<reasoning>"; decoding must match it
    from hexlab.toy.problems import ANSWER_OPEN

    question = "Mia has 34 apples. She buys 27 more. How many apples does Mia have?"
    text = tiny_lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    expected = tiny_lm.tokenizer(text + ANSWER_OPEN, add_special_tokens=False)["input_ids"]
    assert build_prompt(Example("t1", "toy", question, "61"), tiny_lm) == expected
