"""The `hortus` command: one module per command group; no logic lives here."""

from hortus.cli.core import main

__all__ = ["main"]
