"""The project's error types: every message says what failed, expected vs got, and what to do."""


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
