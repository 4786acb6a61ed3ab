"""The `hexlab` command line: one subcommand per job.

Each command module defines `register(subparsers)`, which adds its subcommands and sets
`func(args) -> int` as the handler. Models, datasets and decoding are imported inside the
handlers, so `hexlab --help` loads little more than torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "hexlab.toy.cli",
    "hexlab.runs.cli",
    "hexlab.probe_cli",
    "hexlab.report_cli",
    "hexlab.import_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hexlab",
        description="Probe, decode and scale masked diffusion language models (HEX).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        # Bad input reaches the user as one line naming the value and the fix, not a traceback.
        if args.verbose:
            raise
        print(f"hexlab {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
