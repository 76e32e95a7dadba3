"""The ``securepair`` command (also ``python -m securepair``).

Each subcommand is a module of this package with ``HELP`` (one line for
the command list), ``add_arguments(parser)`` and ``run(args) -> int``; the
module docstring's first paragraph is the subcommand's description.
Modules are imported only when their subcommand runs, except for their
options, so ``securepair --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__

#: Subcommand name -> module, in the order ``--help`` lists them.
COMMANDS = {
    "demo": "demo",
    "gencert": "gencert",
    "connect": "connect",
    "serve": "serve",
    "bench": "bench",
}


class CommandError(Exception):
    """A problem the user can fix (a bad option, a missing file): printed
    as one line, ``securepair COMMAND: error: ...``, with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand included."""
    parser = argparse.ArgumentParser(
        prog="securepair",
        description="A sans-IO TLS engine: TLS between two byte buffers, and the tools around it.",
    )
    parser.add_argument("--version", action="version", version=f"securepair {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module_name}":
                raise
            continue  # a subcommand this tree does not have yet
        first, _, rest = (module.__doc__ or "").strip().partition("\n\n")
        sub = commands.add_parser(
            name,
            help=module.HELP,
            description=first or None,
            epilog=rest.replace("``", "").replace("::\n", ":\n") or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(_module=module)
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    try:
        status: int = module.run(args)
    except CommandError as exc:
        print(f"securepair {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
