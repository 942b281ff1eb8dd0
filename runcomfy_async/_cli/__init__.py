"""The `runcomfy` command line: commands, batch, output, codegen, wait, interrupt, manifest."""

from .commands import main

__all__ = ["main"]
