"""Quality of the shipped toy model on its test split: single-path accuracy per block size.

Decodes every test problem (500 by default) once per block size at temperature 0 with
low-confidence remasking, 32-token answer window and 16 steps, grades with hexlab's toy grader,
and prints one line per block size. The last line reads
`toy quality: single-path accuracy min N%, max N%` over the semi-autoregressive block sizes
(every size smaller than the window). The one-block decoding is printed beside them for the
collapse comparison.

    python benchmarks/toy_quality.py [--model toy] [--limit 500] [--batch-size 250]
"""

from __future__ import annotations

import argparse
import time

from hexlab.answers import grade, is_collapsed
from hexlab.datasets import load_dataset
from hexlab.decode import DecodeConfig, PathSpec, decode
from hexlab.models import load_model
from hexlab.prompts import build_prompt
from hexlab.runs.config import hex_block_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()

    lm = load_model(args.model, device="cpu")
    gen_length, steps = lm.profile.gen_length, lm.profile.steps
    examples = load_dataset("toy", limit=args.limit)
    prompts = [build_prompt(example, lm) for example in examples]
    accuracies = {}
    for block in hex_block_sizes(gen_length, steps):
        start = time.perf_counter()
        spec = PathSpec.uniform(block, gen_length, steps=steps)
        result = decode(
            lm, [(p, spec) for p in prompts], gen_length, DecodeConfig(batch_size=args.batch_size)
        )
        texts = lm.tokenizer.batch_decode(result.tokens.astype("int64"), skip_special_tokens=True)
        correct = [grade("toy", t, e.gold) for t, e in zip(texts, examples, strict=True)]
        collapsed = sum(is_collapsed(t) for t in texts) / len(texts)
        accuracies[block] = sum(correct) / len(correct)
        print(
            f"block {block:>3}: accuracy {100 * accuracies[block]:5.1f}%, "
            f"collapse {100 * collapsed:4.1f}%, {time.perf_counter() - start:5.1f} s"
        )
    semi_ar = [acc for block, acc in accuracies.items() if block < gen_length]
    print(
        f"toy quality: single-path accuracy min {100 * min(semi_ar):.0f}%, "
        f"max {100 * max(semi_ar):.0f}%"
    )


if __name__ == "__main__":
    main()
