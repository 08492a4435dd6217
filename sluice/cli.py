"""The ``sluice`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sluice`` console script."""
    parser = argparse.ArgumentParser(prog="sluice", description="sluice: parallel Python dataflow")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("cleanup", help="remove shared-memory files left by sluice drivers that died")
    args = parser.parse_args(argv)
    if args.version:
        from sluice import __version__

        print(__version__)
        return 0
    if args.command == "cleanup":
        from sluice.store.shm import cleanup_stale_sessions

        print(f"removed {cleanup_stale_sessions()} stale shared-memory segment(s)")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
