"""The `pec` command: a package of sub-command modules; `main` is its entry point."""

from __future__ import annotations

from pec.presentation.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
