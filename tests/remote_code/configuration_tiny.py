"""Config of a tiny bidirectional LM that stands in for LLaDA's and Dream's remote code in tests."""

from transformers import PretrainedConfig


class TinyDiffusionConfig(PretrainedConfig):
    model_type = "tiny-diffusion"

    def __init__(self, vocab_size=64, hidden_size=16, max_sequence_length=64, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        super().__init__(**kwargs)
