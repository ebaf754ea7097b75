"""Entry point of the ``bench`` console script.

Bad input anywhere (a ``ConfigError`` or a usage error) becomes one line on stderr and exit
code 2 — no traceback, and nothing written, because commands validate before they write.
"""

from __future__ import annotations

import importlib
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
    except typer.TyperException as exc:  # usage errors: unknown command or option, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help())
            return 0
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return USAGE_ERROR
    return result if isinstance(result, int) else 0


def console_main() -> None:
    sys.exit(main())
