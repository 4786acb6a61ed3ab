"""Time the scaling curves on a GSM8K-sized synthetic run: 1,319 questions x 30 paths.

The timed call computes both the prefix and the random-subset curves with 1,000 subset draws and
1,000 bootstrap resamples. The last printed line reads `scale: N.N s` (wall-clock seconds).
`--missing F` drops a fraction F of the rows at random, as in imported runs where some settings
cover only some questions, so the timing includes the sorted random orders of incomplete
questions.
Usage: python benchmarks/scale.py [--questions 1319] [--paths 30] [--seed 0] [--missing 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# The script runs from a plain checkout, where hexlab need not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hexlab.scaling import ScalingConfig, scaling_curves  # noqa: E402


def make_synthetic_paths(num_questions: int, num_paths: int, seed: int) -> pd.DataFrame:
    """Build a seeded paths table with per-question difficulty, distractors and unparsed paths.

    Key "0" is the gold answer. A wrong path picks one of five distractor keys, and 5% of paths
    give no answer.
    """
    rng = np.random.default_rng(seed)
    shape = (num_questions, num_paths)
    solve_rate = rng.beta(2.0, 0.7, size=(num_questions, 1))
    correct = rng.random(shape) < solve_rate
    keys = np.where(correct, "0", rng.integers(1, 6, size=shape).astype(str)).astype(object)
    keys[rng.random(shape) < 0.05] = None
    correct &= keys != None  # noqa: E711 (element-wise comparison with None)
    block_sizes = 2 ** rng.integers(2, 8, size=num_paths)
    return pd.DataFrame(
        {
            "question_id": np.repeat(np.arange(num_questions), num_paths),
            "path_id": np.tile(np.arange(num_paths), num_questions),
            "answer_key": keys.ravel(),
            "correct": correct.ravel(),
            "nfe": np.tile(256 // block_sizes * 8, num_questions),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1319, help="number of questions")
    parser.add_argument("--paths", type=int, default=30, help="number of paths per question")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic table")
    parser.add_argument(
        "--missing", type=float, default=0.0, help="fraction of rows to drop (default: 0)"
    )
    args = parser.parse_args()

    paths = make_synthetic_paths(args.questions, args.paths, args.seed)
    if args.missing > 0:
        paths = paths.sample(frac=1.0 - args.missing, random_state=args.seed)
    config = ScalingConfig(draws=1000, bootstrap=1000, seed=args.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    curves = scaling_curves(paths, config)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    final = curves[(curves["method"] == "random") & (curves["n"] == args.paths)]
    print(final[["metric", "estimate", "ci_low", "ci_high"]].to_string(index=False))
    # Wall time grows when other processes share the cores, and CPU time shows the work itself.
    print(f"cpu time: {cpu:.1f} s")
    print(f"scale: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
