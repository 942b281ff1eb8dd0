"""The `runcomfy` command line (this release: `runcomfy simulator`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the `runcomfy` command; returns the exit status."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="runcomfy", description="Command line of the runcomfy_async SDK."
    )
    parser.add_argument("--version", action="version", version=f"runcomfy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "simulator",
        help="serve a local RunComfy simulator (no key, no network): "
        "`runcomfy simulator --help` lists its options",
        add_help=False,
    )
    _, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    from .simulator import main as simulator_main  # the one command so far

    return simulator_main(rest, prog="runcomfy simulator")
