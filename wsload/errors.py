"""Errors that stop wsload before any load starts.

A ``ConfigError`` always says what is wrong and how to fix it, in one message, so the
command line can print it as it is and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

EXIT_CONFIG_ERROR = 2


class ConfigError(Exception):
    """Bad input found before load starts: one message naming the culprit and the fix."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}\n  fix: {fix}" if fix else message)
