"""hexlab: probing, HEX decoding and test-time scaling for masked diffusion language models."""

__version__ = "0.1.0"
