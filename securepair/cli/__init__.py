"""The ``securepair`` command (also ``python -m securepair``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="securepair",
        description="A sans-IO TLS engine: TLS between two byte buffers.",
    )
    parser.add_argument("--version", action="version", version=f"securepair {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a TLS client and server against each other and show what happens",
        description="Make a CA and a server certificate in memory, run a client and a "
        "server SecurePair against each other, and print the conversation.",
    )
    demo.add_argument("--tls-version", choices=["TLSv1.2", "TLSv1.3"], default=None)
    from . import gencert

    gencert.add_arguments(
        commands.add_parser(
            "gencert",
            help="make a server certificate and key (or a small CA) in one command",
            description=gencert.__doc__.split("\n\n")[0] if gencert.__doc__ else None,
        )
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(max_version=args.tls_version)
    if args.command == "gencert":
        return gencert.run(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
