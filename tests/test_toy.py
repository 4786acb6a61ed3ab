"""The toy task, its tokenizer and its training loop."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hexlab.cli import main
from hexlab.models import load_model
from hexlab.toy.problems import TEST_SEED, Difficulty, make_problem, make_problems
from hexlab.toy.tokenizer import FORMAT_TOKENS
from hexlab.toy.train import TrainConfig, diffusion_loss, encode_batch, learning_rate_at


def test_problem_solution_matches_its_answer():
    for problem in make_problems(200, seed=3):
        # replay the equations: each line is "a+b=c" or "a-b=c" and the last c is the answer
        total = None
        for line in problem.solution.split("\n"):
            left, result = line.split("=")
            op = "+" if "+" in left else "-"
            a, b = (int(x) for x in left.split(op))
            assert (a + b if op == "+" else a - b) == int(result)
            assert total is None or a == total
            total = int(result)
        assert total == problem.answer >= 0
        assert problem.target.endswith(f"<answer>\\boxed{{{problem.answer}}}</answer>")


def test_generator_is_seeded():
    assert make_problems(20, seed=5) == make_problems(20, seed=5)
    assert make_problems(20, seed=5) != make_problems(20, seed=6)


def test_difficulty_sets_steps_and_operand_sizes():
    rng = random.Random(0)
    hard = Difficulty(min_steps=3, max_steps=3, min_operand=100, max_operand=999)
    problem = make_problem(rng, hard)
    assert problem.solution.count("\n") == 2  # three equations
    assert all(len(token) == 3 for token in problem.question.split()[2:3])


def test_invalid_difficulty_is_rejected():
    with pytest.raises(ValueError, match="invalid step range 3..1"):
        Difficulty(min_steps=3, max_steps=1)


def test_shipped_test_split_is_the_seeded_split():
    from hexlab.datasets import data_dir

    rows = [json.loads(line) for line in (data_dir() / "toy" / "test.jsonl").open()]
    expected = make_problems(len(rows), TEST_SEED)
    assert len(rows) >= 500
    assert [r["question"] for r in rows] == [p.question for p in expected]
    assert [r["answer"] for r in rows] == [str(p.answer) for p in expected]


def test_tokenizer_round_trips_and_keeps_format_tokens_whole(toy_tokenizer):
    problem = make_problems(1, seed=1)[0]
    ids = toy_tokenizer(problem.target, add_special_tokens=False)["input_ids"]
    assert toy_tokenizer.decode(ids) == problem.target
    tokens = toy_tokenizer.convert_ids_to_tokens(ids)
    for tag in ("</reasoning>", "<answer>", "\\boxed{", "</answer>"):
        assert tokens.count(tag) == 1
    assert set(FORMAT_TOKENS) <= set(toy_tokenizer.get_vocab())
    assert toy_tokenizer.unk_token_id not in ids


def test_training_batch_pads_answers_with_end_of_text(toy_tokenizer):
    problems = make_problems(4, seed=2)
    ids, attention_mask, width = encode_batch(toy_tokenizer, problems, gen_length=32)
    assert ids.shape == (4, width + 32)
    eot = toy_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    for row in ids:
        answer = row[width:].tolist()
        end = answer.index(eot)
        assert set(answer[end + 1 :]) <= {toy_tokenizer.eos_token_id}
    # prompts are left-padded: the mask is 0 before each prompt and 1 after
    assert attention_mask[:, -1].all()


def test_loss_weights_masked_tokens_by_inverse_ratio(tiny_lm, toy_tokenizer):
    ids, attention_mask, width = encode_batch(toy_tokenizer, make_problems(8, seed=4), 32)
    generator = torch.Generator().manual_seed(0)
    loss = diffusion_loss(
        tiny_lm.model, ids, attention_mask, width, tiny_lm.mask_token_id, generator
    )
    # an untrained model is near uniform over V tokens, so each masked token costs about ln V;
    # E[(1/t) * (masked share t)] = 1, so the loss is about ln V
    assert abs(loss.item() - torch.log(torch.tensor(float(len(toy_tokenizer)))).item()) < 1.5


def test_learning_rate_warms_up_then_decays():
    config = TrainConfig(steps=1000, warmup_steps=100, learning_rate=1e-3)
    assert learning_rate_at(0, config) == pytest.approx(1e-5)
    assert learning_rate_at(99, config) == pytest.approx(1e-3)
    assert learning_rate_at(999, config) == pytest.approx(1e-4, rel=0.01)


def test_toy_train_command_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "toy"
    assert (
        main(
            [
                "toy",
                "train",
                "--out",
                str(out),
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--hidden-size",
                "32",
                "--num-layers",
                "1",
            ]
        )
        == 0
    )
    lm = load_model(str(out), device="cpu")
    assert lm.profile.family == "toy"
    assert lm.model.config.hidden_size == 32
    assert json.loads((out / "hexlab_toy.json").read_text())["train_config"]["steps"] == 3


def test_toy_train_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["toy", "train", "--out", str(tmp_path), "--steps", "1"]) == 1
    assert "not empty" in capsys.readouterr().err
