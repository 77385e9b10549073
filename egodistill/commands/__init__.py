"""One module per `egodistill` subcommand.

Each module defines `ORDER: int` (its place in `--help`) and `register(subparsers)`, which adds
its parser and sets `func=<callable(args) -> int>` as the default. `egodistill.cli` discovers the
modules here, so a subcommand appears exactly when its module exists.
"""
