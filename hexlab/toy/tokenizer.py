"""The toy model's tokenizer: whole words, single digits and single symbols.

Digits are single tokens so that the model learns arithmetic digit by digit. A leading space belongs
to the token that follows it (" has", " 3"), so decoding is plain concatenation and the text
round-trips exactly. The HEX answer tags and `\\boxed{` are single tokens, as the answer format
requires.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hexlab.toy.problems import ADD_PHRASES, ITEMS, NAMES, SUB_PHRASES

BOS, EOS, EOT, MASK, UNK = "<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>", "[UNK]"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [EOS, BOS, EOT, MASK, UNK, USER, ASSISTANT]
# Answer-format tokens are ordinary added tokens: decoding with skip_special_tokens keeps them.
FORMAT_TOKENS = ["<reasoning>", "</reasoning>", "<answer>", "</answer>", "\\boxed{"]

PIECE_PATTERN = r" ?[A-Za-z]+| ?[0-9]|\n| ?[^A-Za-z0-9\s]| +"
SYMBOLS = list(".,?!:;+-*/=(){}$%")
EXTRA_WORDS = ["has", "have", "does", "How", "many", "more", "away", "the", "answer", "is"]

CHAT_TEMPLATE = (
    BOS + "{% for message in messages %}"
    "{% if message['role'] == 'user' %}" + USER + "{{ message['content'] }}" + EOT + "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    + ASSISTANT
    + "{{ message['content'] }}"
    + EOT
    + "{% endif %}{% endfor %}{% if add_generation_prompt %}"
    + ASSISTANT
    + "{% endif %}"
)


def _vocabulary() -> list[str]:
    words = set(NAMES) | set(NAMES.values()) | set(ITEMS) | set(EXTRA_WORDS)
    for phrase in ADD_PHRASES + SUB_PHRASES:
        words.update(w for w in phrase.replace("{n}", "").split())
    pieces = []
    for unit in sorted(words) + [str(d) for d in range(10)] + SYMBOLS:
        pieces += [unit, " " + unit]
    return pieces + ["\n", " "]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the toy tokenizer as a transformers fast tokenizer with a chat template."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + _vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=UNK,
        mask_token=MASK,
        additional_special_tokens=[EOT, USER, ASSISTANT],
    )
    tokenizer.add_tokens(FORMAT_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
