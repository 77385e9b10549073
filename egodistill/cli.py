"""The `egodistill` command line: discovers one subcommand per module in `egodistill.commands`."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from egodistill import __version__, commands
from egodistill.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand module registered, in ORDER."""
    parser = argparse.ArgumentParser(
        prog="egodistill",
        description=(
            "Multimodal knowledge distillation for egocentric action recognition: train unimodal "
            "teachers (RGB, flow, audio, layout), distill their ensemble into an RGB-only student, "
            "evaluate and predict with the student alone."
        ),
    )
    parser.add_argument("--version", action="version", version=f"egodistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(commands.__path__):
        mod = importlib.import_module(f"egodistill.commands.{info.name}")
        if hasattr(mod, "register"):
            modules.append(mod)
    for mod in sorted(modules, key=lambda m: getattr(m, "ORDER", 100)):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow the flags (`train CFG --overwrite optim.lr=1e-3`): argparse
    # ends a positional list at the first flag, so the later ones arrive here.
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if overrides and isinstance(getattr(args, "overrides", None), list):
        args.overrides.extend(overrides)
        extra = [a for a in extra if a not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, KeyError, OSError) as e:
        # User-facing errors carry their own explanation; a traceback would bury it. OSError:
        # files and folders (not found, not readable or writable, a folder given as a file, not
        # HDF5, a full disk), named by the message.
        if getattr(args, "debug", False):
            raise
        print(f"egodistill {args.command}: error: {_message(e)}", file=sys.stderr)
        return 1


def _message(error: BaseException) -> str:
    """Return an error's message; one re-raised from a DataLoader worker carries the worker's
    traceback in its text, of which only the last line (the original message) is kept."""
    text = str(error)
    if "Original Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else text
        text = last.split(": ", 1)[1] if last.split(": ", 1)[0].isidentifier() and ": " in last else last
    return text


if __name__ == "__main__":
    sys.exit(main())
