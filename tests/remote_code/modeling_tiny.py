"""A tiny bidirectional LM loaded through `trust_remote_code`, as LLaDA and Dream are."""

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_tiny import TinyDiffusionConfig


class TinyDiffusionModel(PreTrainedModel):
    config_class = TinyDiffusionConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.mix = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.head = torch.nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.embed(input_ids)  # (B, L, H)
        weights = torch.ones(input_ids.shape[0], input_ids.shape[1], 1, device=input_ids.device)
        if attention_mask is not None:
            weights = attention_mask[..., None].to(hidden.dtype)
        # every position sees the mean of all real positions: bidirectional and padding-aware
        context = (hidden * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
        return MaskedLMOutput(logits=self.head(torch.tanh(hidden + self.mix(context))))
