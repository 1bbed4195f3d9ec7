"""The `ray-macaw` command line: the parser of every command group (one module each: tasks,
collect, train, tune, supervised, dataset) and the entry point, which prints a `RayMacawError`
as one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ray_macaw.cli import collect, dataset, supervised, tasks, train, tune
from ray_macaw.cli.common import quiet_library_noise
from ray_macaw.errors import RayMacawError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ray-macaw",
        description="Ray-native MACAW: offline meta-RL with advantage weighting.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for group in (tasks, collect, train, tune, supervised, dataset):
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ray-macaw` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    quiet_library_noise()
    try:
        args.func(args)
    except RayMacawError as e:
        # From a Ray worker, the error arrives as RayTaskError(TheError): print its cause.
        cause = getattr(e, "cause", None)
        print(
            f"ray-macaw: error: {cause if isinstance(cause, RayMacawError) else e}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "files already written are complete")
        print(f"\nray-macaw: interrupted; {hint}", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    return 0


if __name__ == "__main__":
    sys.exit(main())
