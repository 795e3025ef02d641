"""Errors the CLI renders as a short message with a hint (no traceback unless ``-v``).

Every error says what was expected, what was found, and (in ``hint``) the command that fixes it.
"""

from __future__ import annotations


class LesionkitError(Exception):
    """Base class for errors shown to the user. ``exit_code`` 1 = bad input/state, 2 = usage."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = list(details or [])

    def __str__(self) -> str:  # pragma: no cover - trivial
        parts = [self.message, *self.details]
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class UsageError(LesionkitError):
    """A flag or argument is wrong (exit code 2)."""

    exit_code = 2


class InputError(LesionkitError):
    """An input file, column or value is missing or malformed."""


class SchemaVersionError(InputError):
    """A file was written by a newer lesionkit than this one."""


class OutputExistsError(LesionkitError):
    """An output exists and ``--overwrite`` was not given."""


class ValidationFailed(LesionkitError):
    """``manifest validate`` found problems (they were already printed as a table)."""
