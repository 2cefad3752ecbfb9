"""The ``flightrec`` command's entry point: says which extra to install when one is missing.

The CLI imports what a command needs when it runs, so a client-only install (``[cli]``)
answers ``--version`` and the API commands, and ``serve`` says to install ``[server]``.
``flightrec verify`` skips the command group altogether (flightrec/cli_verify.py ``run_alone``):
a bundle is checked in a fresh process with only the verifier's imports (issue 11: <= 1 s).
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
        if sys.argv[1:2] == ["verify"]:  # the offline check of a bundle: only what it needs is imported
            from flightrec.cli_verify import run_alone

            run_alone(sys.argv[2:])
            return
        from flightrec.cli import app

        app()
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None
