"""Errors a user can act on: each names the file, line and field where one applies."""

from __future__ import annotations

from pathlib import Path


class UlmrecError(Exception):
    """Base class for errors meant for the user (printed without a traceback by the CLI)."""


class DataError(UlmrecError):
    """Bad input data. ``str(err)`` reads ``file:line: field 'x': what is wrong``."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field = path, line, field
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)


class ConfigError(UlmrecError):
    """A bad setting, raised before any work starts."""
