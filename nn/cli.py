"""The command line: ``python -m nn <command>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m nn",
        description="Neural networks from scratch in NumPy, every equation verified.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "verify",
        help="verify every registered op live and print a table (exit 1 if any fails)",
        description="Check every registered op's vjp by complex step, central differences and "
        "the full Jacobian, its reentrancy and its float32 forward; print the worst error of "
        "each method as a fraction of its tolerance.",
    )
    args = parser.parse_args(argv)
    if args.command == "verify":
        from nn.verify import verify_all

        return 0 if verify_all() else 1
    return 2  # unreachable: argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
