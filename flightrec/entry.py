"""The ``flightrec`` command's entry point: says which extra to install when one is missing.

The CLI imports what a command needs when it runs, so a client-only install (``[cli]``)
answers ``--version`` and the API commands, and ``serve`` says to install ``[server]``.
"""

from __future__ import annotations

import sys

CLI_MODULES = {"typer", "rich", "click", "pydantic_settings", "lazy_loader"}


def _missing(exc: ModuleNotFoundError) -> SystemExit:
    extra = "cli" if (exc.name or "").split(".")[0] in CLI_MODULES else "server"
    sys.stderr.write(
        f"flightrec: the module {exc.name!r} is missing; install it with `pip install 'flight-recorder[{extra}]'`\n"
    )
    return SystemExit(2)


def main() -> None:
    try:
        from flightrec.cli import app

        app()
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None
