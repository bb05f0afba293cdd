"""Errors a user can act on.

Every failure caused by input (a file, a flag, a config value) is raised as an ``RsirError`` whose
message says what is wrong and where; the CLI prints that message and exits with status 2 instead
of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class RsirError(Exception):
    """Base class for errors caused by user input."""


class ConfigError(RsirError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class DataError(RsirError):
    """Malformed or inconsistent data; names the file and, when known, the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line


class InvalidDataError(DataError):
    """A dataset whose structure is broken (offsets, counts, ids, catalogue size): the input itself is
    wrong, whichever entry it came through, so services answer INVALID_ARGUMENT (gRPC) or 422 (HTTP)."""
