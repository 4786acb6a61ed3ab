"""Shared fixtures: the toy tokenizer, a tiny random model with it, and the shipped toy model."""

from __future__ import annotations

import pytest
import torch

from hexlab.models import PROFILES, DiffusionLM, load_model
from hexlab.toy.tokenizer import build_tokenizer
from hexlab.toy.train import TrainConfig, build_model


@pytest.fixture(scope="session")
def toy_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(toy_tokenizer) -> DiffusionLM:
    """A randomly initialised 2-layer model with the toy tokenizer: fast plumbing tests."""
    torch.manual_seed(0)
    config = TrainConfig(hidden_size=32, num_layers=2, num_heads=2)
    special_ids = dict(pad_token_id=toy_tokenizer.eos_token_id,
                       eos_token_id=toy_tokenizer.eos_token_id,
                       bos_token_id=toy_tokenizer.bos_token_id)
    model = build_model(config, len(toy_tokenizer), special_ids)
    return DiffusionLM(model, toy_tokenizer, PROFILES["toy"])


@pytest.fixture(scope="session")
def toy_lm() -> DiffusionLM:
    """The trained toy model shipped with hexlab, on the CPU in float32."""
    return load_model("toy", device="cpu")
