"""Semi-autoregressive decoding of masked diffusion LMs along many paths at once.

- `schedules`: `PathSpec` (block sizes, steps, remasking rule, temperature, seed, EOS handling)
  and the step arithmetic (`split_steps`, `transfer_counts`).
- `sampling`: proposals (argmax or float64 Gumbel-max), remasking scores, choice of reveals.
- `engine`: `decode` and `decode_batches`, the batched decoder.
- `reference`: `reference_decode`, a one-row full-canvas decoder for tests and benchmarks.
- `trajectory`: `Trajectories` (what each step revealed), NPZ storage and `replay`.

Example, five block sizes on one toy question:

    lm = load_model("toy")
    prompt = lm.encode_prompt(question, prefill="<reasoning>")
    paths = [PathSpec.uniform(b, 32, steps=16) for b in (2, 4, 8, 16, 32)]
    trajectories = decode(lm, [(prompt, path) for path in paths], gen_length=32)
"""

from hexlab.decode.engine import DecodeConfig, decode, decode_batches
from hexlab.decode.reference import ReferenceResult, reference_decode
from hexlab.decode.schedules import (
    EOS_OPTIONS,
    REMASKING_RULES,
    PathSpec,
    Step,
    split_steps,
    transfer_counts,
)
from hexlab.decode.trajectory import DecodeStats, Trajectories, replay

__all__ = [
    "EOS_OPTIONS",
    "REMASKING_RULES",
    "DecodeConfig",
    "DecodeStats",
    "PathSpec",
    "ReferenceResult",
    "Step",
    "Trajectories",
    "decode",
    "decode_batches",
    "reference_decode",
    "replay",
    "split_steps",
    "transfer_counts",
]
