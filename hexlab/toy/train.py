"""Training the toy masked diffusion LM.

The network is a small `BertForMaskedLM`: bidirectional attention and a class that ships with
transformers, so `from_pretrained` on the saved folder needs no remote code. The objective is the
masked-diffusion loss LLaDA's instruction tuning uses:

    t ~ U(eps, 1] per sequence; each answer token is masked with probability t;
    loss = E[ (1 / t) * sum over masked answer positions of -log p(x_i | canvas) ] / G

with the prompt never masked and every answer padded with end-of-text tokens to the fixed window G.
The padding is part of the loss, which is what teaches the model the end-of-text bias that makes
one-block confidence decoding collapse.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hexlab.toy.problems import ANSWER_OPEN, TEST_SEED, Difficulty, make_problem, make_problems
from hexlab.toy.tokenizer import EOT, build_tokenizer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Everything a toy training run depends on; the defaults built the shipped checkpoint."""

    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    gen_length: int = 32
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 96
    seed: int = 0
    min_mask_ratio: float = 1e-3
    difficulty: Difficulty = dataclasses.field(default_factory=Difficulty)
    test_size: int = 500


def build_model(config: TrainConfig, vocab_size: int, special_ids: dict[str, int]):
    """Build a randomly initialised bidirectional `BertForMaskedLM` sized by `config`."""
    from transformers import BertConfig, BertForMaskedLM

    bert_config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=4 * config.hidden_size,
        max_position_embeddings=config.max_length,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **special_ids,
    )
    return BertForMaskedLM(bert_config)


def encode_batch(tokenizer, problems, gen_length: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Canvas ids (B, L), attention mask (B, L) and the prompt width; prompts are left-padded.

    Each row is [padding, prompt ending in `<reasoning>`, answer, end of turn, end-of-text...] with
    the answer part exactly `gen_length` tokens long.
    """
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p.question}], tokenize=False, add_generation_prompt=True
        )
        + ANSWER_OPEN
        for p in problems
    ]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    answers = [p.target + EOT for p in problems]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    width = max(len(ids) for ids in prompt_ids)
    rows, masks = [], []
    for prompt, answer in zip(prompt_ids, answer_ids):
        if len(answer) > gen_length:
            raise ValueError(f"answer of {len(answer)} tokens does not fit gen_length {gen_length}")
        pad = width - len(prompt)
        tail = [tokenizer.eos_token_id] * (gen_length - len(answer))
        rows.append([tokenizer.eos_token_id] * pad + prompt + answer + tail)
        masks.append([0] * pad + [1] * (len(prompt) + gen_length))
    return torch.tensor(rows), torch.tensor(masks), width


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from the first real token, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def diffusion_loss(
    model, ids, attention_mask, prompt_width, mask_token_id, generator, min_mask_ratio=1e-3
):
    """Compute the masked-diffusion loss of one batch (see the module docstring)."""
    batch, length = ids.shape
    gen_length = length - prompt_width
    t = torch.rand(batch, 1, generator=generator) * (1 - min_mask_ratio) + min_mask_ratio  # (B, 1)
    is_masked = torch.rand(batch, gen_length, generator=generator) < t  # (B, G)
    is_masked = torch.cat([torch.zeros(batch, prompt_width, dtype=torch.bool), is_masked], dim=1)
    noisy = torch.where(is_masked, torch.full_like(ids, mask_token_id), ids)
    positions = position_ids_for(attention_mask)
    logits = model(input_ids=noisy, attention_mask=attention_mask, position_ids=positions).logits
    token_loss = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), ids, reduction="none"
    )  # (B, L)
    weighted = (token_loss * is_masked / t).sum(dim=1) / gen_length  # (B,)
    return weighted.mean()


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak rate."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train(config: TrainConfig, out_dir: Path, progress: bool = True) -> Path:
    """Train the toy model and save model, tokenizer and metadata to `out_dir`."""
    torch.manual_seed(config.seed)
    tokenizer = build_tokenizer()
    special_ids = dict(
        pad_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = build_model(config, len(tokenizer), special_ids)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    test_questions = {
        p.question for p in make_problems(config.test_size, TEST_SEED, config.difficulty)
    }
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    logger.info(
        "training toy model: %s, %d parameters", config, sum(p.numel() for p in model.parameters())
    )
    start = time.time()
    bar = tqdm(range(config.steps), desc="toy train", unit="step", disable=not progress)
    for step in bar:
        # draw a fresh batch, never a test question
        problems = []
        while len(problems) < config.batch_size:
            problem = make_problem(rng, config.difficulty)
            if problem.question not in test_questions:
                problems.append(problem)
        ids, attention_mask, width = encode_batch(tokenizer, problems, config.gen_length)

        # one optimiser step on the diffusion loss
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config)
        loss = diffusion_loss(
            model,
            ids,
            attention_mask,
            width,
            tokenizer.mask_token_id,
            generator,
            config.min_mask_ratio,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % 200 == 0 or step == config.steps - 1:
            logger.info("step %d loss %.4f (%.0f s)", step, loss.item(), time.time() - start)

    save(model, tokenizer, config, out_dir, train_seconds=time.time() - start)
    return out_dir


def save(model, tokenizer, config: TrainConfig, out_dir: Path, train_seconds: float) -> None:
    """Write safetensors weights, the tokenizer and `hexlab_toy.json` (the training config)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    meta = {
        "train_config": dataclasses.asdict(config),
        "train_seconds": round(train_seconds, 1),
        "gen_length": config.gen_length,
        "steps": config.gen_length // 2,
    }
    (out_dir / "hexlab_toy.json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("saved toy model to %s", out_dir)
