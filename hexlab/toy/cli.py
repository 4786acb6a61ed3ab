"""`hexlab toy train` and `hexlab toy data`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from hexlab.toy.problems import TEST_SEED


def register(subparsers) -> None:
    toy = subparsers.add_parser("toy", help="train the toy diffusion LM or write its test split")
    toy_commands = toy.add_subparsers(dest="toy_command", metavar="TOY_COMMAND", required=True)

    train = toy_commands.add_parser(
        "train", help="train the toy model with the masked-diffusion loss (about 10 min on 2 cores)"
    )
    train.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for the checkpoint (weights, tokenizer, hexlab_toy.json)",
    )
    train.add_argument("--steps", type=int, help="optimiser steps (default 2000)")
    train.add_argument("--batch-size", type=int, help="problems per step (default 128)")
    train.add_argument("--learning-rate", type=float, help="peak AdamW learning rate")
    train.add_argument("--seed", type=int, help="seed of the weights and the training stream")
    train.add_argument("--hidden-size", type=int, help="transformer width (default 128)")
    train.add_argument("--num-layers", type=int, help="transformer layers (default 4)")
    train.add_argument("--force", action="store_true", help="overwrite a non-empty --out folder")
    train.set_defaults(func=run_train)

    data = toy_commands.add_parser("data", help="write a seeded split of toy problems as JSONL")
    data.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    data.add_argument("-n", type=int, default=500, help="number of problems (default 500)")
    data.add_argument(
        "--seed",
        type=int,
        default=TEST_SEED,
        help=f"generator seed (default {TEST_SEED}, the shipped test split)",
    )
    data.set_defaults(func=run_data)


def run_train(args: argparse.Namespace) -> int:
    from hexlab.toy.train import TrainConfig, train

    out = args.out
    if out.exists() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"{out} is not empty; choose another --out or pass --force")
    overrides = {
        field: getattr(args, field)
        for field in ("steps", "batch_size", "learning_rate", "seed", "hidden_size", "num_layers")
        if getattr(args, field) is not None
    }
    config = dataclasses.replace(TrainConfig(), **overrides)
    train(config, out)
    print(f"saved the toy model to {out}; load it with hexlab.models.load_model({str(out)!r})")
    return 0


def run_data(args: argparse.Namespace) -> int:
    from hexlab.toy.problems import make_problems, write_split

    write_split(make_problems(args.n, args.seed), args.out)
    print(f"wrote {args.n} toy problems to {args.out}")
    return 0
