"""Entry point of the ``bench`` console script.

Bad input anywhere (a ``ConfigError`` or a usage error) becomes one line on stderr and exit
code 2 — no traceback, and nothing written, because commands validate before they write.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from bench.cli.app import app, invocation
from registry import ConfigError

# Every module of this package adds its commands to ``app`` when imported.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (also used by the tests, in-process)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    invocation[:] = ["bench", *map(str, argv)]
    try:
        result = app(args=argv, prog_name="bench", standalone_mode=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped (``bench ... | head -1``): the rest of the output is not wanted
        _discard_stdout()
        return 0
    except typer.TyperException as exc:  # usage errors: unknown command or option, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help())
            return 0
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return USAGE_ERROR
    return result if isinstance(result, int) else 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that writing out what is buffered at exit fails no more."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def console_main() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
    sys.exit(code)
