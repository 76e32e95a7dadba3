"""Put TLS in front of a plaintext service, as stunnel and the classic
daemons' SSL mode do; or serve the server side of STARTTLS.

Examples::

    securepair gencert                    # server.cert and server.pem, once
    securepair serve --listen 127.0.0.1:8443 --forward 127.0.0.1:8332
    securepair serve --listen :8443 --forward 127.0.0.1:8080 \\
        --allow 192.168.1.* --allow 10.0.0.0/8 --workers 4
    securepair serve --listen :8443 --sni-cert 'api.example.com=api.cert,api.pem' \\
        --route 'api.example.com=127.0.0.1:9000' --forward 127.0.0.1:8080
    securepair serve --listen :2525 --starttls smtp --forward 127.0.0.1:25
    securepair serve --listen :1143 --starttls imap --echo
    securepair serve --config serve.toml  # the same names as keys

Connections from 127.0.0.1 and ::1 are always allowed; others need
--allow.  The log (standard error) has one line per event; --log-format
json for log shippers.  SIGTERM or SIGINT stops accepting and lets the
connections in flight finish (--stop-timeout).  Every problem with the
options is reported in one line before anything listens.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..server.settings import OPTIONS, SettingsError, read_config_file
from . import CommandError

HELP = "put TLS in front of a plaintext service (or serve STARTTLS), like stunnel"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve``: one flag per entry of the settings table."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with the same names as the flags as keys; flags win",
    )
    for option in OPTIONS:
        flag = f"--{option.name}"
        help_text = option.help
        if option.default not in (None, [], False):
            help_text += f" (default: {option.default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if option.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option.kind is list:
            kwargs["action"] = "append"
            kwargs["metavar"] = option.metavar
        else:
            kwargs["type"] = option.kind
            kwargs["metavar"] = option.metavar
            if option.choices is not None:
                kwargs["choices"] = option.choices
                kwargs.pop("metavar")
        parser.add_argument(flag, dest=f"opt_{option.name}", **kwargs)


def run(args: argparse.Namespace) -> int:
    """Run ``securepair serve``."""
    from ..server import listener
    from ..server.log import Log
    from ..server.settings import load

    try:
        values: dict[str, Any] = {}
        if args.config:
            values.update(read_config_file(args.config))
        for option in OPTIONS:
            given = getattr(args, f"opt_{option.name}", None)
            if given is not None:
                values[option.name] = given
        settings = load(values)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    log = Log(settings.log_format, quiet=settings.quiet)
    try:
        return listener.run(settings, log)
    except OSError as exc:
        raise CommandError(str(exc.strerror or exc)) from None
