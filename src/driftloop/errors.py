"""Errors that are the user's to fix: the CLI prints them and exits 2, HTTP answers 4xx.

Anything that is not a `UserError` is a bug in driftloop and keeps its traceback.
"""

from __future__ import annotations


class DriftloopError(Exception):
    """Base class of every error driftloop raises on purpose."""


class UserError(DriftloopError):
    """Bad input: a config key, a data column, a row, a file. The message names it."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class ConfigError(UserError):
    """The config file or an environment override is wrong."""


class DataError(UserError):
    """A data file is unreadable, empty, or breaks the schema."""


class NotFoundError(UserError):
    """A dataset version, model version, run or request id does not exist."""


class ConflictError(DriftloopError):
    """A compare-and-swap update lost a race; the caller re-reads and decides again."""


class LeaseLostError(DriftloopError):
    """A fenced write by a controller whose lease lapsed or was taken over: it must stop acting, not retry."""


def first_line(exc: BaseException) -> str:
    """An error in one line, `Class: first line`: SQLAlchemy appends the SQL and a link, MLflow a payload,
    which a log line or a CLI message does not need. For a driver error wrapped by SQLAlchemy, the driver's."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else ''}"
