"""Domain exceptions and the exit codes they map to.

Every failure a user can cause or meet is one of these. The CLIs catch
``PlurcastError`` in one place (``plurcast.clikit``) and print
``Error: <message> [— <hint>]`` on stderr, then any ``details`` lines indented below
it, and exit with ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_INVALID = 3


class PlurcastError(Exception):
    """Base class: a one-line message, an optional fix, and an exit code.

    `details` are lines that do not fit on one, e.g. commands to run by hand.
    """

    exit_code = EXIT_RUNTIME

    def __init__(
        self, message: str, hint: str | None = None, *, details: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = tuple(details)

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class RuntimeFailure(PlurcastError):
    """A platform or runtime error (exit 1): network, locked database, partial failure."""

    exit_code = EXIT_RUNTIME


class ConfigError(PlurcastError):
    """Configuration or authentication is wrong or missing (exit 2)."""

    exit_code = EXIT_CONFIG


class InvalidInput(PlurcastError):
    """The user asked for something that cannot be done as written (exit 3)."""

    exit_code = EXIT_INVALID


class NotFound(InvalidInput):
    """An id (or id prefix) that matches nothing."""


class Declined(InvalidInput):
    """The user answered no at a confirmation prompt."""
