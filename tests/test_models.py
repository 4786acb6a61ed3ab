"""Model profiles: ids, prompt formatting, the Dream shift and loading errors, on tiny models.

LLaDA and Dream load through `trust_remote_code`; here a tiny model from tests/remote_code stands in
for their modeling files, saved in a temporary folder, so nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

from hexlab.models import PROFILES, load_model, resolve_device, resolve_profile

REMOTE_CODE = Path(__file__).parent / "remote_code"

LLADA_TEMPLATE = (
    "<|startoftext|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
DREAM_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FAMILIES = {
    # family: (model_type, special tokens, mask token, end-of-text, end-of-turn, template)
    "llada": (
        "llada",
        ["<|startoftext|>", "<|start_header_id|>", "<|end_header_id|>"],
        "<|mdm_mask|>",
        "<|endoftext|>",
        "<|eot_id|>",
        LLADA_TEMPLATE,
    ),
    "dream": ("Dream", ["<|im_start|>"], "<|mask|>", "<|endoftext|>", "<|im_end|>", DREAM_TEMPLATE),
}


def write_tiny_model(folder: Path, family: str, with_eot: bool = True) -> Path:
    """Save a tiny random remote-code model and a tokenizer with the family's special tokens."""
    model_type, extra, mask, eos, eot, template = FAMILIES[family]
    specials = [eos, mask] + extra + ([eot] if with_eot else []) + ["[UNK]"]
    words = ["hello", "world", "user", "assistant", "2", "+", "=", "4", "<reasoning>", "\n"]
    vocab = {token: index for index, token in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        unk_token="[UNK]",
        additional_special_tokens=[t for t in specials if t not in (eos, "[UNK]")],
    )
    tokenizer.chat_template = template
    folder.mkdir(parents=True, exist_ok=True)
    for source in REMOTE_CODE.glob("*.py"):
        shutil.copy(source, folder / source.name)
    auto_map = {
        "AutoConfig": "configuration_tiny.TinyDiffusionConfig",
        "AutoModel": "modeling_tiny.TinyDiffusionModel",
    }
    (folder / "config.json").write_text(
        json.dumps({"model_type": "tiny-diffusion", "auto_map": auto_map, "vocab_size": len(vocab)})
    )
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    torch.manual_seed(0)
    AutoModel.from_config(config, trust_remote_code=True).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # the family is read from model_type, as in LLaDA's ("llada") and Dream's ("Dream") configs
    saved = json.loads((folder / "config.json").read_text())
    saved["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(saved))
    return folder


@pytest.fixture(scope="module")
def llada_folder(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("llada"), "llada")


@pytest.fixture(scope="module")
def dream_folder(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("dream"), "dream")


def test_llada_ids_come_from_the_tokenizer(llada_folder):
    lm = load_model(str(llada_folder), device="cpu")
    vocab = lm.tokenizer.get_vocab()
    assert lm.profile.family == "llada"
    assert lm.mask_token_id == vocab["<|mdm_mask|>"]
    assert lm.eos_token_id == vocab["<|endoftext|>"]
    assert lm.eot_token_id == vocab["<|eot_id|>"]
    assert lm.stop_token_ids == [vocab["<|endoftext|>"], vocab["<|eot_id|>"]]


def test_llada_profile_ids_are_the_fallback(tmp_path):
    lm = load_model(str(write_tiny_model(tmp_path, "llada", with_eot=False)), device="cpu")
    # the tokenizer lacks <|eot_id|>, so the profile's LLaDA id is used
    assert lm.eot_token_id == PROFILES["llada-8b-instruct"].eot_token_id == 126348


def test_llada_prompt_uses_chat_template_and_prefill(llada_folder):
    lm = load_model(str(llada_folder), device="cpu")
    text = lm.format_prompt("hello world", prefill="<reasoning>")
    assert text == (
        "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nhello world<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<reasoning>"
    )
    ids = lm.encode_prompt("hello world", prefill="<reasoning>")
    assert ids[0] == lm.tokenizer.convert_tokens_to_ids("<|startoftext|>")
    assert ids[-1] == lm.tokenizer.convert_tokens_to_ids("<reasoning>")


def test_llada_logits_are_not_shifted(llada_folder):
    lm = load_model(str(llada_folder), device="cpu")
    ids = torch.tensor([[5, 6, 7, 8]])
    raw = lm.model(input_ids=ids).logits
    assert torch.equal(lm.logits(ids), raw)


def test_dream_logits_are_shifted_right_by_one(dream_folder):
    lm = load_model(str(dream_folder), device="cpu")
    assert lm.profile.shift_logits
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    raw = lm.model(input_ids=ids).logits  # (1, 5, V)
    shifted = lm.logits(ids, torch.ones_like(ids))
    # position i takes the raw scores at i - 1; position 0 keeps its own
    assert torch.equal(shifted[:, 1:], raw[:, :-1])
    assert torch.equal(shifted[:, 0], raw[:, 0])


def test_dream_ids_and_template(dream_folder):
    lm = load_model(str(dream_folder), device="cpu")
    vocab = lm.tokenizer.get_vocab()
    assert lm.mask_token_id == vocab["<|mask|>"]
    assert lm.eot_token_id == vocab["<|im_end|>"]
    assert lm.format_prompt("hello", "<reasoning>") == (
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<reasoning>"
    )


def test_toy_profile_formatting_and_ids(toy_lm):
    vocab = toy_lm.tokenizer.get_vocab()
    assert toy_lm.profile.family == "toy"
    assert toy_lm.mask_token_id == vocab["<|mdm_mask|>"]
    assert toy_lm.eos_token_id == vocab["<|endoftext|>"]
    assert toy_lm.eot_token_id == vocab["<|eot_id|>"]
    text = toy_lm.format_prompt("Mia has 3 pens.", prefill="<reasoning>")
    assert text == "<|startoftext|><|user|>Mia has 3 pens.<|eot_id|><|assistant|><reasoning>"
    assert toy_lm.tokenizer.decode(toy_lm.encode_prompt("Mia has 3 pens.", "<reasoning>")) == text


def test_toy_logits_ignore_left_padding(toy_lm):
    ids = torch.tensor(toy_lm.encode_prompt("Mia has 3 pens.", "<reasoning>"))[None]  # (1, L)
    padded = torch.cat([torch.full((1, 3), toy_lm.eos_token_id), ids], dim=1)  # (1, L + 3)
    attention_mask = torch.cat([torch.zeros(1, 3), torch.ones_like(ids)], dim=1)
    alone = toy_lm.logits(ids, torch.ones_like(ids))
    with_padding = toy_lm.logits(padded, attention_mask)[:, 3:]
    torch.testing.assert_close(with_padding, alone, rtol=1e-5, atol=1e-5)


def test_local_masked_lm_folder_loads(tmp_path, tiny_lm):
    tiny_lm.model.save_pretrained(tmp_path)
    tiny_lm.tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), device="cpu")
    assert lm.profile.family == "masked-lm"
    assert lm.mask_token_id == tiny_lm.mask_token_id


def test_unknown_model_lists_profiles():
    with pytest.raises(ValueError, match="llada-8b-instruct.*local folder"):
        resolve_profile("no-such-model")


def test_hub_id_resolves_to_profile():
    assert resolve_profile("GSAI-ML/LLaDA-8B-Instruct").name == "llada-8b-instruct"
    assert resolve_profile("Dream-org/Dream-v0-Instruct-7B").shift_logits


def test_folder_without_tokenizer_is_rejected(tmp_path, tiny_lm):
    tiny_lm.model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_model(str(tmp_path), device="cpu")


def test_cuda_request_without_gpu_is_rejected():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
