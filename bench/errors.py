"""The project's error types, and the name suggestion its messages use: each says what failed and what to do."""

import difflib


class BenchError(Exception):
    """Base class of every error the library raises on purpose; the CLI prints it as one line."""

    exit_code = 1


class UsageError(BenchError):
    """The request itself is wrong (unknown name, bad option value)."""

    exit_code = 2


class DataError(BenchError):
    """A dataset, image or archive cannot be had or is not what it should be."""


class MethodError(BenchError):
    """A method failed, returned something that breaks the contract, or cannot be built."""


class WeightsError(MethodError):
    """A weights file is missing, tampered with, or does not fit its architecture."""


def did_you_mean(name: str, known: list[str]) -> str:
    """`"did you mean 'x'? "` for the closest of `known`, or `""`: the prefix of an unknown-name message."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}? " if close else ""
